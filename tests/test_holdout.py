"""Held-out data named with --holdout: accuracy reported every epoch, classes matched by name."""

import json

from click.testing import CliRunner
from imagedata import colour_for, write_image

from labelscrub.cli import cli


def folder(root, classes, count=4):
    for label, name in enumerate(classes):
        for index in range(count):
            write_image(root / name / f"{index}.png", colour_for(label * 10 + index))
    return root


def test_holdout_accuracy_is_reported_every_epoch(tmp_path):
    train = folder(tmp_path / "train", ["ant", "bee"])
    holdout = folder(tmp_path / "holdout", ["bee"], count=3)  # a held-out set may lack a class
    result = CliRunner().invoke(cli, ["clean", str(train), "--out", str(tmp_path / "out"), "--holdout", str(holdout),
                                      "--epochs", "2", "--batch-size", "4", "--quiet"])
    assert result.exit_code == 0, result.output
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["counts"]["heldout_samples"] == 3
    assert all(epoch["heldout_accuracy"] is not None for epoch in run["epochs"])


def test_holdout_with_an_unknown_class_is_refused(tmp_path):
    train = folder(tmp_path / "train", ["ant", "bee"])
    holdout = folder(tmp_path / "holdout", ["wasp"], count=2)
    result = CliRunner().invoke(cli, ["clean", str(train), "--out", str(tmp_path / "out"), "--holdout", str(holdout)])
    assert result.exit_code != 0 and "wasp" in result.output and "Traceback" not in result.output
