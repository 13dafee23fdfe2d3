"""--precision: the option, what auto means on each device, a bf16 step on the CPU with fp32 measurements, and a
resume that refuses another precision."""

import dataclasses

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_methods import CLASSES, SIDE, N, tiny_data

import labelscrub.checkpoint as checkpoint
from labelscrub.cli import cli
from labelscrub.config import CleanConfig
from labelscrub.errors import LabelscrubError
from labelscrub.precision import cpu_has_fast_bf16, resolve_precision, with_precision
from labelscrub.train import make_setup, probe, train_epoch


def test_the_option_is_offered_checked_and_defaults_to_auto(tmp_path):
    assert CleanConfig().precision == "auto"
    for command in ("clean", "retrain"):
        assert "--precision [auto|bf16|fp32]" in CliRunner().invoke(cli, [command, "--help"]).output
    result = CliRunner().invoke(cli, ["clean", str(tmp_path), "--precision", "fp16"])
    assert result.exit_code != 0 and "--precision" in result.output and "Traceback" not in result.output
    with pytest.raises(LabelscrubError, match="--precision must be one of auto, bf16, fp32"):
        CleanConfig(precision="half")


def test_auto_is_bf16_on_cuda_and_on_cpus_with_amx_and_fp32_elsewhere():
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    amx = bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    assert cpu_has_fast_bf16() == amx
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if amx else "fp32")
    # what the user asks for is what runs, except bf16 where it cannot
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    with pytest.raises(LabelscrubError, match="not supported on Apple MPS"):
        resolve_precision("bf16", torch.device("mps"))


def test_the_resolved_precision_is_what_the_config_records():
    resolved = with_precision(CleanConfig(), torch.device("cuda"))
    assert resolved.precision == "bf16" and resolved.to_dict()["precision"] == "bf16"


def test_a_bf16_step_on_the_cpu_trains_and_measures_in_fp32():
    pixels, labels, _ = tiny_data()
    config = CleanConfig(epochs=2, batch_size=8, seed=3, precision="bf16").resolve(typical_side=SIDE)
    setup = make_setup(pixels, labels, np.ones(N, dtype=bool), CLASSES, config, torch.device("cpu"))
    assert setup.channels_last and next(setup.model.parameters()).dtype == torch.float32
    before = next(setup.model.parameters()).detach().clone()
    with setup.autocast():
        assert setup.forward(torch.zeros(2, 3, SIDE, SIDE)).dtype == torch.bfloat16  # the network runs in bf16
    kept = np.arange(N) % 4 != 0
    measured = train_epoch(setup, kept, 0, schedule_epochs=2, record=np.ones(N, dtype=bool),
                           keep_probabilities=True).measured
    assert not torch.equal(next(setup.model.parameters()), before)  # it trained
    assert measured.losses.dtype == np.float32 and measured.probabilities.dtype == np.float32
    assert np.isfinite(measured.losses).all() and np.isfinite(measured.margin).all()
    # fp32 from bf16 logits: probabilities sum to 1 to fp32 precision, not bf16's 3 digits
    np.testing.assert_allclose(measured.probabilities.sum(1), 1.0, atol=1e-5)
    result = probe(setup, setup.pixels, labels, np.arange(N))
    assert result.losses.dtype == np.float32 and np.isfinite(result.losses).all()


def test_a_resume_in_another_precision_is_refused_with_the_reason():
    run = CleanConfig(precision="fp32").resolve(typical_side=SIDE)
    saved = checkpoint.fingerprint(data="d", config=run.to_dict(), sample_ids=["a"], labels=np.zeros(1))
    now = checkpoint.fingerprint(data="d", config=dataclasses.replace(run, precision="bf16").to_dict(),
                                 sample_ids=["a"], labels=np.zeros(1))
    assert checkpoint.mismatch(saved, now) == ["precision was 'fp32', now 'bf16'"]
