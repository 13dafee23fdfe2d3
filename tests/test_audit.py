"""`labelscrub audit`: the review page of a run. The page's content is checked here as written (escaping, counts,
pictures, what it says when data is gone); tests/test_audit_browser.py drives it in a real browser."""

import base64
import html
import io
import json
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from imagedata import colour_for, encode, write_image, write_parquet
from PIL import Image
from runfolders import fake_run, synthetic_run, tiny_digits

import labelscrub
from labelscrub.audit import MAX_SHOWN, gallery_rows, per_class_limit
from labelscrub.cli import cli

HOSTILE_CLASS = "<img src=x onerror=alert(1)>"
HOSTILE_FILE = '"><script>alert(2)<.png'


def page_data(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="audit-data">(.*?)</script>', page, re.S)
    return json.loads(found.group(1))


def tiles(page: str) -> dict[str, str]:
    return dict(re.findall(r'<b data-count="([a-z_]+)">([^<]*)</b>', page))


@pytest.fixture
def hostile_run(tmp_path):
    """An image folder whose class and file names are HTML, one unreadable file, a run that dropped two."""
    data = tmp_path / "data"
    for index in range(4):
        write_image(data / HOSTILE_CLASS / f"{index}.png", colour_for(index))
        write_image(data / "plain" / f"{index}.png", colour_for(index + 4))
    write_image(data / HOSTILE_CLASS / HOSTILE_FILE, colour_for(9))
    (data / "plain" / "broken.png").write_bytes(b"not an image <b>")
    dropped = [f"{HOSTILE_CLASS}/{HOSTILE_FILE}", "plain/1.png"]
    scores = {f"{HOSTILE_CLASS}/{HOSTILE_FILE}": 3.0, "plain/1.png": 2.0, "plain/2.png": 1.0}
    return fake_run(tmp_path / "run", data, dropped=dropped, scores=scores, unreadable=("plain/broken.png",),
                    with_run_json=True)


def test_every_string_from_the_data_is_escaped(hostile_run):
    page = labelscrub.write_audit(hostile_run).path.read_text()
    for hostile in (HOSTILE_CLASS, HOSTILE_FILE, "not an image <b>", "<script>alert"):
        assert hostile not in page
    assert html.escape(HOSTILE_CLASS) in page  # the class table and heatmap show it as text
    assert page.count("<script") == 2  # the data block and the page's own script, nothing from the data
    data = page_data(page)
    assert data["classes"] == [HOSTILE_CLASS, "plain"]  # intact once parsed, for textContent in the browser
    assert f"{HOSTILE_CLASS}/{HOSTILE_FILE}" in {card["id"] for card in data["cards"]}


def test_the_page_shows_run_json_counts_the_unreadable_files_and_the_most_suspicious_first(hostile_run):
    result = labelscrub.write_audit(hostile_run)
    page = result.path.read_text()
    run = json.loads((hostile_run / "run.json").read_text())
    shown = tiles(page)
    assert shown["samples"] == str(run["counts"]["samples"]) == "10"
    assert shown["dropped"] == "2 (20.0%)" and shown["unreadable"] == "1 (10.0%)"
    assert shown["in_manifest"] == "7 (70.0%)" and shown["heldout_accuracy"] == "87.5%"
    assert shown["estimated_noise_rate"] == "25.0%" and shown["classes"] == "2"
    assert "plain/broken.png" in page and "not an image &lt;b&gt;" not in page  # the error text is run.json's
    assert "cannot decode the image" in page
    cards = page_data(page)["cards"]
    assert len(cards) == result.cards == 9  # every readable sample: few classes, few samples
    plain = [card["id"] for card in cards if card["given"] == 1]
    assert plain[:2] == ["plain/1.png", "plain/2.png"]  # highest score first within the class
    decisions = {card["id"]: card["run_decision"] for card in cards}
    assert decisions["plain/1.png"] == "drop" and decisions["plain/2.png"] == "keep"
    assert result.pictures == 9 and all(card["picture"].startswith("data:image/jpeg;base64,") for card in cards)
    assert '<svg class="chart"' in page and '<svg class="heatmap"' in page


def test_without_its_data_the_page_is_written_without_pictures_and_says_so(hostile_run, tmp_path):
    shutil.rmtree(tmp_path / "data")
    result = labelscrub.write_audit(hostile_run, tmp_path / "elsewhere.html")
    page = result.path.read_text()
    assert result.pictures == 0 and result.cards == 9
    assert len(result.notices) == 1 and "No pictures" in result.notices[0]
    assert "No pictures: the run&#x27;s data could not be read" in page
    assert all(card["picture"] is None for card in page_data(page)["cards"])


def test_decisions_kept_in_the_browser_follow_the_run_not_where_its_folder_is(hostile_run, tmp_path):
    key = page_data(labelscrub.write_audit(hostile_run).path.read_text())["key"]
    moved = shutil.move(hostile_run, tmp_path / "moved")
    assert page_data(labelscrub.write_audit(moved).path.read_text())["key"] == key  # the page finds them again
    run = json.loads((moved / "run.json").read_text())
    run["timings"] = {"total_seconds": 12.5}  # another run of the same data
    (moved / "run.json").write_text(json.dumps(run))
    assert page_data(labelscrub.write_audit(moved).path.read_text())["key"] != key


def test_parquet_thumbnails_come_from_the_rows_shown(tmp_path):
    data = write_parquet(tmp_path / "data" / "train.parquet", {
        "image": [encode(colour_for(index), side=120) for index in range(9)],
        "label": [index % 3 for index in range(9)],
    }, labels_names=["a", "b", "c"], row_group_size=2)
    run = fake_run(tmp_path / "run", data, dropped=["train.parquet:4"], with_run_json=True)
    result = labelscrub.write_audit(run, per_class=2)
    cards = page_data(result.path.read_text())["cards"]
    assert result.cards == result.pictures == 6
    for card in cards:
        row = int(card["id"].split(":")[1])
        picture = Image.open(io.BytesIO(base64.b64decode(card["picture"].split(",", 1)[1])))
        assert picture.format == "JPEG" and max(picture.size) == 80  # 120 px shrunk to the thumbnail side
        assert all(abs(a - b) <= 8 for a, b in zip(picture.getpixel((40, 40)), colour_for(row)))


def test_the_gallery_stays_near_two_thousand_cards_whatever_the_number_of_classes():
    assert per_class_limit(10, None) == 60
    assert per_class_limit(100, None) * 100 <= MAX_SHOWN
    assert per_class_limit(5000, None) == 1  # at least one per class
    assert per_class_limit(1000, 7) == 7  # --per-class raises it
    with pytest.raises(labelscrub.LabelscrubError, match="--per-class must be at least 1"):
        per_class_limit(10, 0)


def test_with_more_classes_than_cards_the_gallery_holds_the_most_suspicious_of_all_and_the_page_says_so(tmp_path):
    classes = 2 * MAX_SHOWN + 500
    rng = np.random.default_rng(0)
    report = {"label": np.repeat(np.arange(classes), 2), "score": rng.random(2 * classes),
              "error_free": np.ones(2 * classes, bool)}
    shown, capped = gallery_rows(report, classes, None)
    assert capped and len(shown) == MAX_SHOWN
    score = report["score"]
    best_of_class = np.where(score[0::2] >= score[1::2], np.arange(0, 2 * classes, 2), np.arange(1, 2 * classes, 2))
    assert set(shown) == set(best_of_class[np.argsort(-score[best_of_class])[:MAX_SHOWN]])  # highest of all classes
    assert gallery_rows(report, classes, 1)[0].size == classes  # --per-class asks for more, and gets it

    names = [f"class {index}" for index in range(classes)]
    run = synthetic_run(tmp_path / "run", class_names=names, samples=2 * classes)
    page = labelscrub.write_audit(run).path.read_text()
    assert len(page_data(page)["cards"]) == MAX_SHOWN
    assert f"the gallery holds at most {MAX_SHOWN:,}, so" in page and f"of the {classes:,} classes have no card" in page


def test_cli_writes_the_page_and_refuses_a_folder_that_is_not_a_run(hostile_run, tmp_path):
    result = CliRunner().invoke(cli, ["audit", str(hostile_run), "-o", str(tmp_path / "page.html")])
    assert result.exit_code == 0, result.output
    assert f"audit page: {tmp_path / 'page.html'}" in result.output and "9 samples to review" in result.output
    missing = CliRunner().invoke(cli, ["audit", str(tmp_path / "nothing")])
    assert missing.exit_code != 0 and "Traceback" not in missing.output
    assert missing.output.strip().splitlines()[-1].startswith("Error: ") and "no run.json" in missing.output


@pytest.mark.parametrize("content, problem", [
    ("[1, 2]", "a JSON list instead of an object"),
    ("not json {", "not readable JSON"),
    ('{"counts": {}}', "class_names is missing"),
    ('{"class_names": ["a"]}', "counts is missing"),
    ('{"class_names": ["a"], "counts": {"samples": 3}}', "counts is missing or lacks one of"),
    ('{"class_names": ["a"], "counts": {"samples": 1, "classes": 1, "dropped": 0, "in_manifest": 1, '
     '"unreadable": 0}, "epochs": [1]}', "an entry of epochs"),
    ('{"class_names": ["a"], "counts": {"samples": 1, "classes": 1, "dropped": 0, "in_manifest": 1, '
     '"unreadable": 0}, "noise": [0.1]}', "noise is not a JSON object"),
])
def test_a_run_json_of_the_wrong_shape_is_a_one_line_error_naming_it(hostile_run, tmp_path, content, problem):
    (hostile_run / "run.json").write_text(content)
    result = CliRunner().invoke(cli, ["audit", str(hostile_run), "-o", str(tmp_path / "page.html")])
    assert result.exit_code != 0 and "Traceback" not in result.output and result.exception is not None
    assert isinstance(result.exception, SystemExit)  # click's one-line error, not an escaped exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {hostile_run / 'run.json'}: ") and problem in lines[0]
    assert "rerun" in lines[0] and not (tmp_path / "page.html").exists()


@pytest.mark.e2e
def test_clean_writes_the_page_unless_told_not_to(tmp_path):
    data = tiny_digits(tmp_path / "digits", train_per_class=6, heldout_per_class=2)
    options = dict(epochs=2, warmup=1, ramp=1, rho_max=0.2, lr=0.02, batch_size=32, seed=0)
    result = labelscrub.clean(data, tmp_path / "run", **options)
    assert result.audit_path == tmp_path / "run" / "audit.html"
    cards = page_data(result.audit_path.read_text())["cards"]
    assert len(cards) == 60 and sum(card["dropped"] for card in cards) == result.n_dropped
    run = json.loads(result.run_json_path.read_text())
    assert all(epoch["kept_loss"] is not None for epoch in run["epochs"])
    assert run["epochs"][-1]["left_out_loss"] is not None and run["epochs"][0]["left_out_loss"] is None

    again = labelscrub.clean(data, tmp_path / "run", overwrite=True, audit=False, **options)
    assert again.audit_path is None and not (tmp_path / "run" / "audit.html").exists()
