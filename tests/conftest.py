"""Shared fixtures: one full clean of the bundled sample and one tiny clean, each run once and reused by the
end-to-end tests that need a run."""

from pathlib import Path

import pytest
from click.testing import CliRunner

import labelscrub
from labelscrub.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "sample_data" / "digits"
DIGITS_PARQUET = ROOT / "sample_data" / "digits-parquet"
FLIPPED = ROOT / "sample_data" / "digits_flipped.csv"
PLANTED_NOISE = 0.2  # sample_data/make_digits.py FLIP_SHARE
# The README's recipe for the sample: with only 11 steps per epoch the default peak rate (0.1) swings the final
# accuracy by several points from run to run; 0.02 trains the tiny set stably.
SAMPLE_LR = "0.02"


@pytest.fixture(scope="session")
def folder_run(tmp_path_factory):
    """The user's defaults on the whole sample (--rho-max auto), with --relabel: the one full-size clean of the
    suite, which the end-to-end tests of clean, retrain, relabel and the audit page share."""
    out = tmp_path_factory.mktemp("folder-run")
    result = CliRunner().invoke(cli, ["clean", str(DIGITS), "--out", str(out), "--overwrite", "--epochs", "15",
                                      "--lr", SAMPLE_LR, "--relabel", "--seed", "0"])
    assert result.exit_code == 0, result.output
    return out, result.output


TINY_EPOCHS = 3


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A --relabel clean run on 12 training and 4 held-out images per digit, for the tests of what comes after a
    clean (apply, retrain, resuming a retrain) that need a real run but not a good model. (So few steps give no
    confident suggestion to rescue.)"""
    from runfolders import tiny_digits  # runfolders reads this module's paths

    data = tiny_digits(tmp_path_factory.mktemp("tiny-digits"))
    return labelscrub.clean(data, tmp_path_factory.mktemp("tiny-run"), epochs=TINY_EPOCHS, warmup=1, ramp=1,
                            rho_max=0.25, lr=0.02, batch_size=32, relabel=True, seed=0)
