"""Shared output files: checkpoints are never unpickled as code, the output-folder guard, no stale manifests."""

import pytest
import torch
from runfolders import tiny_digits

import labelscrub
from labelscrub.errors import LabelscrubError
from labelscrub.outputs import CHECKPOINT_NAME, load_checkpoint, prepare_out_dir

RAN = []


class Exploit:
    def __reduce__(self):
        return (RAN.append, ("code ran",))


def test_a_checkpoint_carrying_code_is_refused_not_run(tmp_path):
    torch.save({"fingerprint": {}, "payload": Exploit()}, tmp_path / CHECKPOINT_NAME)
    with pytest.raises(LabelscrubError, match="cannot read the checkpoint"):
        load_checkpoint(tmp_path, {})
    assert RAN == []


def test_resume_needs_a_checkpoint_and_a_fresh_run_needs_an_empty_folder(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    with pytest.raises(LabelscrubError, match="not empty"):
        prepare_out_dir(tmp_path / "out", tmp_path / "data.csv", overwrite=False)
    with pytest.raises(LabelscrubError, match="no checkpoint.pt"):
        prepare_out_dir(tmp_path / "out", tmp_path / "data.csv", overwrite=False, resume=True)
    prepare_out_dir(tmp_path / "out", tmp_path / "data.csv", overwrite=True)


def test_overwriting_with_another_manifest_format_leaves_no_stale_manifest(tmp_path):
    data, out = tiny_digits(tmp_path / "digits", train_per_class=2, heldout_per_class=1), tmp_path / "out"
    options = dict(epochs=1, batch_size=8, warmup=0, ramp=0, rho_max=0.1, overwrite=True)
    labelscrub.clean(data, out, manifest_format="csv", **options)
    assert (out / "manifest.csv").exists()
    result = labelscrub.clean(data, out, manifest_format="jsonl", **options)
    assert result.manifest_path.name == "manifest.jsonl"
    assert sorted(path.name for path in out.glob("manifest.*")) == ["manifest.jsonl"]
