"""The CLI surface: help, errors as one line without a traceback, the output-folder guard."""

import dataclasses
import runpy
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from labelscrub.cli import cli
from labelscrub.config import CleanConfig

ROOT = Path(__file__).resolve().parents[1]


def test_every_command_has_help_with_an_example_and_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for name in cli.commands:
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0
        assert "Example:" in result.output
        assert f"labelscrub {name}" in readme


def test_clean_options_default_to_the_config_and_retrain_options_to_the_clean_run():
    fields = {field.name for field in dataclasses.fields(CleanConfig)}
    clean = {param.name: param.default for param in cli.commands["clean"].params if param.name in fields}
    assert clean == {name: getattr(CleanConfig(), name) for name in clean}
    assert len(clean) > 20  # the options are found, not an empty match
    retrain = {param.name: param.default for param in cli.commands["retrain"].params if param.name in fields}
    assert retrain and all(default is None for default in retrain.values())


def test_every_option_has_a_plain_default_whatever_the_click_version():
    # click 8.2+ reports a flag declared without a default as a sentinel object, older versions as False: every
    # option states its default, so --help and the library calls read the same on any click pyproject allows
    for name, command in cli.commands.items():
        for param in (param for param in command.params if isinstance(param, click.Option)):
            assert param.default is None or isinstance(param.default, bool | int | float | str), (name, param.name)


def test_python_dash_m_runs_the_cli(monkeypatch, capsys):
    # in this process, as `python -m` runs it (a new interpreter would spend seconds importing torch again; the
    # resume tests start real `python -m labelscrub` processes)
    monkeypatch.setattr(sys, "argv", ["labelscrub", "--version"])
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("labelscrub", run_name="__main__", alter_sys=True)
    assert exited.value.code == 0 and capsys.readouterr().out.startswith("labelscrub, version ")


def test_missing_data_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(cli, ["clean", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0
    assert "nope" in result.output and "no such file or folder" in result.output


def test_non_empty_output_folder_is_refused_without_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep-me.txt").write_text("mine")
    result = CliRunner().invoke(cli, ["clean", str(ROOT / "sample_data" / "digits"), "--out", str(out)])
    assert result.exit_code != 0 and "--overwrite" in result.output
    assert (out / "keep-me.txt").read_text() == "mine"


def test_output_folder_inside_the_input_is_refused(tmp_path):
    data = ROOT / "sample_data" / "digits"
    result = CliRunner().invoke(cli, ["clean", str(data), "--out", str(data / "out")])
    assert result.exit_code != 0 and "inside the input" in result.output
    assert not (data / "out").exists()


def test_bad_option_values_name_the_option(tmp_path):
    result = CliRunner().invoke(cli, ["clean", str(ROOT / "sample_data" / "digits"), "--out", str(tmp_path / "o"),
                                      "--rho-max", "1.5"])
    assert result.exit_code != 0 and "--rho-max" in result.output and "Traceback" not in result.output


def test_rho_max_takes_auto_or_a_number_and_names_the_option_otherwise(tmp_path):
    result = CliRunner().invoke(cli, ["clean", str(ROOT / "sample_data" / "digits"), "--out", str(tmp_path / "o"),
                                      "--rho-max", "half"])
    assert result.exit_code != 0 and "--rho-max" in result.output and "neither auto nor a number" in result.output
    assert "auto" in CliRunner().invoke(cli, ["clean", "--help"]).output
