"""What the user reads: the decoding count, the epoch line, the console warning while a run goes on and the closing
summary's doubted estimate."""

import io
from types import SimpleNamespace

from labelscrub.measurement import EpochSummary
from labelscrub.progress import REDRAW_SECONDS, ConsoleProgress, closing_summary, decoding, describe_epoch


def doubted_result():
    noise = {"estimated_noise_rate": 0.1, "spread_noise_rate": 0.1, "uncapped_noise_rate": 0.215,
             "estimate_doubt": "it was still falling (32% over the last epoch)", "rho_max_used": 0.1,
             "classes": {"cat": {"estimated_noise_rate": 0.1, "confused_with": None, "confused_share": 0.0}}}
    summary = {"counts": {"samples": 10, "trainable": 10, "dropped": 1, "kept": 9, "unreadable": 0,
                          "classes": 1},
               "dropped_by_class": {"cat": 1}, "noise": noise, "config": {"relabel": False}}
    return SimpleNamespace(summary=summary, heldout_accuracy=None, report_path="r", manifest_path="m",
                           model_path="p", run_json_path="j", audit_path=None)


def test_the_closing_summary_says_the_estimate_was_doubted_and_what_it_read():
    text = closing_summary(doubted_result())
    assert "warning: the noise estimate cannot be trusted (it was still falling (32% over the last epoch))" in text
    assert "read 21.5%, capped at 10.0%" in text


def test_the_closing_summary_does_not_warn_where_the_count_replaced_a_doubted_estimate():
    result = doubted_result()
    noise = result.summary["noise"]
    noise["spread_doubt"], noise["estimate_doubt"] = noise["estimate_doubt"], None
    text = closing_summary(result)
    assert "cannot be trusted" not in text
    assert ("the estimate of labels wrong at random was doubted (it was still falling (32% over the last epoch)); "
            "the plausible mistakes counted in mid-training set the estimate instead") in text


def test_a_note_reaches_the_console_as_a_warning_line():
    stream = io.StringIO()
    ConsoleProgress(stream).note("the noise estimate is still falling")
    assert stream.getvalue() == "warning: the noise estimate is still falling\n"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def decode_thousand(progress: ConsoleProgress, times: list[float]) -> None:
    """Feed `progress` what decode_all reports for 1,000 images, at the clock readings `times`."""
    clock = iter(times)
    progress.clock = lambda: next(clock)
    report = decoding(progress, "train")
    for done in (0, 100, 500, 1000):
        report(done, 1000)


def test_decoding_in_a_log_is_one_line_with_the_count_time_and_rate(capsys):
    decode_thousand(ConsoleProgress(), [0.0, 0.5, 1.0, 2.0])
    assert capsys.readouterr().err == "decoded 1,000 train images in 0:02 (500 images/s)\n"


def test_decoding_on_a_terminal_redraws_one_line_in_place_and_ends_it():
    terminal = Terminal()
    # the count at 100 arrives within REDRAW_SECONDS of the first drawing and is not drawn
    decode_thousand(ConsoleProgress(terminal), [0.0, REDRAW_SECONDS / 2, 1.0, 2.0])
    first = "decoding train images 0/1,000  - images/s  0:00"
    middle = "decoding train images 500/1,000  500 images/s  0:01"
    last = "decoded 1,000 train images in 0:02 (500 images/s)"
    assert terminal.getvalue() == f"\r{first}\r{middle}\r{last.ljust(len(middle))}\n"


def test_the_epoch_line_says_when_steps_were_skipped_for_a_gradient_that_was_not_finite():
    summary = EpochSummary(epoch=0, rho=0.0, trained=10, dropped=0, train_loss=1.0, probe_loss=1.0,
                           heldout_accuracy=None, train_seconds=1.0, probe_seconds=0.0, train_images_per_second=10.0,
                           probe_images_per_second=0.0)
    assert "skipped" not in describe_epoch(summary, 3)
    summary.skipped_steps = 2
    assert describe_epoch(summary, 3).endswith("[2 steps skipped: gradient not finite]")
