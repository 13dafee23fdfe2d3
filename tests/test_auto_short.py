"""--rho-max auto in a run too short for its usual readings: an estimate read after the last epoch, or one with no
epochs left for the plausible-mistake count, is doubted and capped, and the user is told why and what to change."""

import json

from runfolders import tiny_digits

import labelscrub
from labelscrub.confusion import epochs_to_count
from labelscrub.noise import DOUBTED_CAP
from labelscrub.progress import Progress


class Notes(Progress):
    def __init__(self):
        self.notes = []

    def note(self, message: str) -> None:
        self.notes.append(message)


def test_a_run_shorter_than_the_estimate_window_says_so_and_drops_at_most_the_cap(tmp_path):
    data = tiny_digits(tmp_path / "digits", train_per_class=4, heldout_per_class=1)
    progress = Notes()
    result = labelscrub.clean(data, tmp_path / "out", epochs=2, batch_size=8, progress=progress)
    noise = json.loads(result.run_json_path.read_text())["noise"]
    assert "the run ended after epoch 2, before the epochs the estimate reads (2-4)" in noise["estimate_doubt"]
    assert noise["estimated_after_epoch"] == 1 and noise["uncapped_noise_rate"] is not None
    assert noise["rho_max_used"] <= DOUBTED_CAP and result.n_dropped <= DOUBTED_CAP * result.n_samples + 1
    assert any("ended after epoch 2" in note for note in progress.notes)


def test_a_run_with_no_room_for_the_plausible_mistake_count_says_how_many_epochs_it_needs(tmp_path):
    # 5 epochs: the estimate is read after the 4th (the 5th if it still fell), and the count's window would need
    # 11 epochs (13) to follow it
    data = tiny_digits(tmp_path / "digits", train_per_class=4, heldout_per_class=1)
    progress = Notes()
    result = labelscrub.clean(data, tmp_path / "out", epochs=5, batch_size=8, progress=progress)
    noise = json.loads(result.run_json_path.read_text())["noise"]
    needed = epochs_to_count(noise["estimated_after_epoch"])
    assert needed in (11, 13)
    assert f"too short to count mistakes that look plausible (that needs at least {needed} epochs)" in \
        noise["estimate_doubt"]
    assert noise["rho_max_used"] <= DOUBTED_CAP
    assert any(f"needs at least {needed} epochs" in note for note in progress.notes)
