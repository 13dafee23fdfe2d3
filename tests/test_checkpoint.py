"""Checkpoints: never unpickled as code, refused when they belong to another run."""

import numpy as np
import pytest
import torch

from labelscrub import checkpoint
from labelscrub.errors import LabelscrubError

RAN = []


class Exploit:
    def __reduce__(self):
        return (RAN.append, ("code ran",))


def test_a_checkpoint_carrying_code_is_refused_not_run(tmp_path):
    torch.save({"fingerprint": {}, "payload": Exploit()}, tmp_path / checkpoint.CHECKPOINT_NAME)
    with pytest.raises(LabelscrubError, match="cannot read the checkpoint"):
        checkpoint.load(tmp_path, {})
    assert RAN == []


def fingerprint(**config):
    return checkpoint.fingerprint(data="/data", config=config, sample_ids=["a", "b"], labels=np.array([0, 1]))


def test_a_checkpoint_resumes_on_another_device_but_not_with_other_options(tmp_path):
    checkpoint.save(tmp_path, {"format": checkpoint.FORMAT, "fingerprint": fingerprint(epochs=5, device="cpu")})
    assert checkpoint.load(tmp_path, fingerprint(epochs=5, device="cuda"))["format"] == checkpoint.FORMAT
    with pytest.raises(LabelscrubError, match="epochs was 5, now 6"):
        checkpoint.load(tmp_path, fingerprint(epochs=6, device="cpu"))
