"""`labelscrub apply`: a person's review applied on top of a clean run's decisions.

Most tests build a run folder without training (`fake_run`: the report of a tiny generated dataset with chosen drops)
so the manifest a review must produce is known exactly. The e2e tests clean a tiny slice of the sample digits once.
"""

import csv
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import TINY_EPOCHS
from imagedata import colour_for, encode, write_image, write_parquet
from runfolders import fake_run

import labelscrub
from labelscrub.cli import cli
from labelscrub.errors import LabelscrubError
from labelscrub.report import METADATA_KEY
from labelscrub.retrain import _locate

HEADER = "sample_id,decision,label\n"


@pytest.fixture
def folder_data(tmp_path):
    """dog/0.png, dog/2.png, dog/4.png and cat/1.png, cat/3.png, cat/5.png."""
    for index in range(6):
        write_image(tmp_path / "data" / ("cat" if index % 2 else "dog") / f"{index}.png", colour_for(index))
    return tmp_path / "data"


@pytest.fixture
def folder_run(tmp_path, folder_data):
    """The run dropped dog/2.png and cat/3.png and could not read cat/5.png."""
    return fake_run(tmp_path / "run", folder_data, dropped=["dog/2.png", "cat/3.png"], unreadable=("cat/5.png",))


def write_decisions(folder: Path, text: str, encoding: str = "utf-8") -> Path:
    path = folder / "decisions.csv"
    path.write_bytes(text.encode(encoding))
    return path


def manifest_rows(manifest: Path, data: Path) -> set[tuple[str, str]]:
    with manifest.open(newline="", encoding="utf-8") as handle:
        return {(Path(row["path"]).relative_to(data).as_posix(), row["label"]) for row in csv.DictReader(handle)}


def test_keep_drop_relabel_change_a_csv_manifest_exactly_as_asked(tmp_path, folder_data, folder_run):
    decisions = write_decisions(tmp_path, HEADER + "dog/2.png,keep,\ncat/1.png,drop,cat\ndog/4.png,relabel,cat\n"
                                                   "cat/5.png,drop,\n")
    result = labelscrub.apply_decisions(folder_run, decisions)
    assert result.out_dir == folder_run / "applied" and result.manifest_path == folder_run / "applied/manifest.csv"
    # dog/2.png was dropped by the run and comes back; cat/3.png stays dropped; cat/5.png was never usable
    assert manifest_rows(result.manifest_path, folder_data) == {("dog/0.png", "dog"), ("dog/2.png", "dog"),
                                                                 ("dog/4.png", "cat")}
    assert result.counts == {"kept": 1, "dropped": 2, "relabelled": 1, "manifest_samples": 3}
    record = json.loads(result.record_path.read_text())
    assert record["source_run"] == str(folder_run.resolve()) and record["decisions_file"] == str(decisions.resolve())
    assert record["counts"] == result.counts and record["manifest"] == str(result.manifest_path.resolve())
    assert [(d["line"], d["sample_id"], d["decision"], d["label"]) for d in record["decisions"]] == [
        (2, "dog/2.png", "keep", "dog"), (3, "cat/1.png", "drop", None), (4, "dog/4.png", "relabel", "cat"),
        (5, "cat/5.png", "drop", None)]


def six_rows(tmp_path):
    """train.parquet of 6 images labelled a, b, c, a, b, c, with a `note` column naming each row."""
    return write_parquet(tmp_path / "data" / "train.parquet", {
        "image": [encode(colour_for(index)) for index in range(6)],
        "label": [index % 3 for index in range(6)],
        "note": [f"row {index}" for index in range(6)],
    }, labels_names=["a", "b", "c"], row_group_size=2)


def test_keep_drop_relabel_change_a_parquet_manifest_on_top_of_the_runs_relabels(tmp_path):
    data = six_rows(tmp_path)
    # --relabel run: row 4 (b) was dropped and put back as a; row 1 was dropped without a suggestion
    run = fake_run(tmp_path / "run", data, dropped=["train.parquet:1", "train.parquet:4"],
                   suggested={"train.parquet:4": 0}, relabel=True)
    decisions = write_decisions(tmp_path, HEADER + "train.parquet:0,relabel,c\ntrain.parquet:2,drop,\n"
                                                   "train.parquet:1,keep,b\n")
    result = labelscrub.apply_decisions(run, decisions, out=tmp_path / "reviewed")
    assert result.manifest_path == tmp_path / "reviewed" / "manifest.parquet"
    table = pq.read_table(result.manifest_path)
    assert table.column("note").to_pylist() == ["row 0", "row 1", "row 3", "row 4", "row 5"]
    assert table.column("label").to_pylist() == [2, 1, 0, 0, 2]
    assert table.schema.metadata[b"huggingface"] == pq.read_schema(data).metadata[b"huggingface"]
    review = json.loads(table.schema.metadata[METADATA_KEY])["review"]
    assert review["counts"] == {"kept": 1, "dropped": 1, "relabelled": 1, "manifest_samples": 5}

    # keep confirms the given label, undoing the run's relabel of row 4
    decisions = write_decisions(tmp_path, HEADER + "train.parquet:4,keep,\n")
    result = labelscrub.apply_decisions(run, decisions, out=tmp_path / "reviewed", overwrite=True)
    assert pq.read_table(result.manifest_path).column("label").to_pylist() == [0, 2, 0, 1, 2]


def test_the_runs_relabels_are_its_suggestions_sure_enough(tmp_path):
    data = six_rows(tmp_path)
    # both dropped with a suggestion; only row 4's reaches --relabel-confidence (0.95 by default)
    run = fake_run(tmp_path / "run", data, dropped=["train.parquet:1", "train.parquet:4"],
                   suggested={"train.parquet:1": 2, "train.parquet:4": 0},
                   confidence={"train.parquet:1": 0.9, "train.parquet:4": 0.97}, relabel=True)
    result = labelscrub.apply_decisions(run, write_decisions(tmp_path, HEADER))
    table = pq.read_table(result.manifest_path)
    assert table.column("note").to_pylist() == ["row 0", "row 2", "row 3", "row 4", "row 5"]
    assert table.column("label").to_pylist() == [0, 2, 0, 0, 2]


def test_a_header_alone_gives_the_runs_manifest_and_the_file_format_is_tolerant(tmp_path, folder_data, folder_run):
    result = labelscrub.apply_decisions(folder_run, write_decisions(tmp_path, HEADER))
    assert result.counts == {"kept": 0, "dropped": 0, "relabelled": 0, "manifest_samples": 3}
    assert manifest_rows(result.manifest_path, folder_data) == {("dog/0.png", "dog"), ("dog/4.png", "dog"),
                                                                 ("cat/1.png", "cat")}
    # a byte-order mark, CRLF line ends, spaces around fields, capitals and blank lines, as spreadsheets save them
    text = "\ufeffsample_id, decision ,label\r\ndog/0.png, Drop , \r\n\r\n,,\r\ncat/3.png,KEEP,cat\r\n"
    result = labelscrub.apply_decisions(folder_run, write_decisions(tmp_path, text), overwrite=True)
    assert manifest_rows(result.manifest_path, folder_data) == {("dog/4.png", "dog"), ("cat/1.png", "cat"),
                                                                 ("cat/3.png", "cat")}


@pytest.mark.parametrize("text, line, problem", [
    ("", 1, "the file is empty"),
    ("id,decision,label\n", 1, "expected the header sample_id,decision,label"),
    ("dog/0.png,keep,\n", 1, "expected the header sample_id,decision,label"),
    (HEADER + "dog/0.png,keep\n", 2, "expected 3 fields"),
    (HEADER + "dog/0.png,relabel,cat,dog\n", 2, "expected 3 fields"),
    (HEADER + "dog/0.png,keep,\ndog/2.png,discard,\n", 3, "unknown decision 'discard'; use keep, drop, relabel"),
    (HEADER + "x.png,drop,\n", 2, "unknown sample id 'x.png'; use the ids of the run's report (sample_id column)"),
    (HEADER + "dog/0.png,relabel,cow\n", 2, "unknown class 'cow'; use one of the run's classes (cat, dog)"),
    (HEADER + "dog/0.png,keep,cow\n", 2, "unknown class 'cow'"),
    (HEADER + "dog/0.png,relabel,\n", 2, "relabel of 'dog/0.png' needs the new class name"),
    (HEADER + "dog/0.png,keep,\n\ndog/0.png,drop,\n", 4, "sample 'dog/0.png' is already decided on line 2"),
    (HEADER + "cat/5.png,keep,\n", 2, "sample 'cat/5.png' cannot be kept, the run could not use it"),
    (HEADER + "cat/5.png,relabel,dog\n", 2, "sample 'cat/5.png' cannot be relabelled"),
    (HEADER + "dog/0.png,drop,\ncat/1.png,keep,dog\n", 3, "keep of 'cat/1.png' names the class 'dog', but its label "
                                                        "is 'cat'; write relabel to change it"),
    (HEADER + " dog/0.png,drop,\n", 2, "unknown sample id ' dog/0.png'; use the ids of the run's report (sample_id "
                                      "column); ids are matched exactly"),
])
def test_a_malformed_decisions_file_is_a_one_line_error_naming_the_line_and_nothing_is_written(
        tmp_path, folder_run, text, line, problem):
    decisions = write_decisions(tmp_path, text)
    with pytest.raises(LabelscrubError) as raised:
        labelscrub.apply_decisions(folder_run, decisions)
    message = str(raised.value)
    assert message.startswith(f"{decisions} line {line}: ") and problem in message and "\n" not in message
    assert not (folder_run / "applied").exists()


ODD_IDS = [" lead", "trail ", "=SUM(1+1)", "+1", "-2", "@cmd", "'quoted", "'=kept", "plain"]


def test_ids_are_matched_exactly_and_the_pages_formula_apostrophe_is_taken_off(tmp_path):
    """Ids with spaces around them, ids a spreadsheet would read as formulas (written '=SUM(1+1) by the page) and
    ids that really start with an apostrophe each address their own sample."""
    data = write_parquet(tmp_path / "data" / "train.parquet", {
        "image": [encode(colour_for(index)) for index in range(len(ODD_IDS))],
        "label": [index % 2 for index in range(len(ODD_IDS))],
        "id": ODD_IDS,
    }, labels_names=["=a", "b"])
    run = fake_run(tmp_path / "run", data, dropped=[], id_column="id")
    written = {" lead": "drop", "trail ": "drop", "'=SUM(1+1)": "drop", "'+1": "drop", "'-2": "relabel",
               "'@cmd": "drop", "'quoted": "drop", "''=kept": "keep"}
    lines = [f'"{sample_id}",{word},{"b" if word == "relabel" else ""}' for sample_id, word in written.items()]
    decisions = write_decisions(tmp_path, HEADER + "\n".join(lines) + "\n" + "plain,relabel,'=a\n")
    result = labelscrub.apply_decisions(run, decisions)
    record = json.loads(result.record_path.read_text())
    assert [(d["sample_id"], d["decision"], d["label"]) for d in record["decisions"]] == [
        (" lead", "drop", None), ("trail ", "drop", None), ("=SUM(1+1)", "drop", None), ("+1", "drop", None),
        ("-2", "relabel", "b"), ("@cmd", "drop", None), ("'quoted", "drop", None), ("'=kept", "keep", "b"),
        ("plain", "relabel", "=a")]
    table = pq.read_table(result.manifest_path)
    assert dict(zip(table.column("id").to_pylist(), table.column("label").to_pylist())) == {
        "-2": 1, "'=kept": 1, "plain": 0}


def test_a_missing_or_non_utf8_decisions_file_is_refused(tmp_path, folder_run):
    with pytest.raises(LabelscrubError, match="decisions.csv: cannot read the decisions file"):
        labelscrub.apply_decisions(folder_run, tmp_path / "decisions.csv")
    with pytest.raises(LabelscrubError, match="not UTF-8"):
        labelscrub.apply_decisions(folder_run, write_decisions(tmp_path, HEADER + "dög.png,drop,\n", "latin-1"))
    assert not (folder_run / "applied").exists()


def test_the_run_and_its_input_must_still_be_there(tmp_path, folder_data, folder_run):
    decisions = write_decisions(tmp_path, HEADER + "dog/0.png,drop,\n")
    with pytest.raises(LabelscrubError, match="no report.parquet here"):
        labelscrub.apply_decisions(tmp_path / "elsewhere", decisions)
    with pytest.raises(LabelscrubError, match="is the run folder"):
        labelscrub.apply_decisions(folder_run, decisions, out=folder_run, overwrite=True)
    (folder_data / "cat" / "1.png").unlink()
    with pytest.raises(LabelscrubError, match="the input changed after the run"):
        labelscrub.apply_decisions(folder_run, decisions)
    shutil.rmtree(folder_data)
    with pytest.raises(LabelscrubError, match="the run's input is not found"):
        labelscrub.apply_decisions(folder_run, decisions)
    assert not (folder_run / "applied").exists()


def test_cli_prints_a_summary_refuses_to_overwrite_and_errors_in_one_line(tmp_path, folder_run):
    decisions = write_decisions(tmp_path, HEADER + "dog/2.png,keep,\ncat/1.png,drop,\n")
    result = CliRunner().invoke(cli, ["apply", str(folder_run), str(decisions)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 3 and "kept 1, dropped 1, relabelled 0" in lines[0]
    assert str(folder_run / "applied" / "manifest.csv") in lines[1] and "(3 samples)" in lines[1]
    assert f"labelscrub retrain {folder_run / 'applied'}" in lines[2]

    before = (folder_run / "applied" / "decisions.json").read_text()
    write_decisions(tmp_path, HEADER)
    refused = CliRunner().invoke(cli, ["apply", str(folder_run), str(decisions)])
    assert refused.exit_code != 0 and "not empty" in refused.output and "--overwrite" in refused.output
    assert (folder_run / "applied" / "decisions.json").read_text() == before
    replaced = CliRunner().invoke(cli, ["apply", str(folder_run), str(decisions), "--overwrite"])
    assert replaced.exit_code == 0 and "(3 samples)" in replaced.output

    write_decisions(tmp_path, HEADER + "x.png,keep,\n")
    failed = CliRunner().invoke(cli, ["apply", str(folder_run), str(decisions), "--overwrite"])
    assert failed.exit_code != 0 and "Traceback" not in failed.output
    assert failed.output.strip().count("\n") == 0 and "line 2: unknown sample id 'x.png'" in failed.output


def test_retrain_reads_an_applied_folder_with_its_source_runs_metadata(tmp_path, folder_run):
    applied = labelscrub.apply_decisions(folder_run, write_decisions(tmp_path, HEADER)).out_dir
    manifest, metadata = _locate(applied)
    assert manifest == applied / "manifest.csv"
    assert metadata["data"] == str((tmp_path / "data").resolve()) and metadata["class_names"] == ["cat", "dog"]


# End to end: a real (tiny) clean run (conftest.tiny_run), then apply and retrain on its output.


@pytest.mark.e2e
def test_a_header_alone_reproduces_the_runs_own_manifest(tiny_run, tmp_path):
    applied = labelscrub.apply_decisions(tiny_run.out_dir, write_decisions(tmp_path, HEADER), out=tmp_path / "a")
    assert applied.manifest_path.read_text() == tiny_run.manifest_path.read_text()


@pytest.mark.e2e
def test_retrain_on_an_applied_folder_uses_the_runs_recipe_and_held_out_data(tiny_run, tmp_path):
    report = tiny_run.report().to_pylist()
    dropping = [row["sample_id"] for row in report if not row["dropped"]][:30]
    decisions = write_decisions(tmp_path, HEADER + "".join(f"{sample_id},drop,\n" for sample_id in dropping))
    applied = labelscrub.apply_decisions(tiny_run.out_dir, decisions, out=tmp_path / "applied")
    kept = applied.counts["manifest_samples"]
    assert kept == tiny_run.summary["counts"]["in_manifest"] - 30

    result = CliRunner().invoke(cli, ["retrain", str(applied.out_dir), "--compare", "--equal-steps", "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((applied.out_dir / "retrain" / "metrics.json").read_text())
    assert metrics["config"]["lr"] == 0.02 and metrics["config"]["batch_size"] == 32  # the run's recipe
    assert metrics["noisy_baseline"]["epochs"] == TINY_EPOCHS and metrics["noisy_baseline"]["train_samples"] == 120
    # --equal-steps counts the run's samples, which only its report knows
    assert metrics["cleaned"]["epochs"] == round(TINY_EPOCHS * 120 / kept)
    assert metrics["cleaned"]["train_samples"] == kept
    assert metrics["cleaned"]["test_samples"] == 40  # the run's held-out split
