"""Reviewing on the audit page in a real browser (headless Chromium), on fake runs built without training: decisions on
samples with awkward ids, the decisions.csv round trip through download, import and `labelscrub apply`."""

import csv
import json

import pytest
from imagedata import colour_for, encode, write_parquet
from pagebrowser import browser_missing, launched_chromium, open_page
from runfolders import fake_run

import labelscrub

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))

# Ids that are properties of every JavaScript object, that a spreadsheet runs as formulas, or that have spaces
AWKWARD_IDS = ["constructor", "__proto__", "=SUM(1+1)", "@cmd", "-2", "toString", " spaced ", "hasOwnProperty",
               "plain-8", "plain-9", "hidden-10", "hidden-11"]
CLASSES = ["cat", "dog"]  # sample i is of class i % 2


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as launched:
        yield launched


@pytest.fixture
def awkward_run(tmp_path):
    """A Parquet dataset whose ids are AWKWARD_IDS, and its audit page with 5 cards per class: hidden-10 and
    hidden-11 score lowest and have no card."""
    data = write_parquet(tmp_path / "data" / "train.parquet", {
        "image": [encode(colour_for(index)) for index in range(len(AWKWARD_IDS))],
        "label": [index % 2 for index in range(len(AWKWARD_IDS))],
        "id": AWKWARD_IDS,
    }, labels_names=CLASSES)
    scores = {sample_id: (-1.0 if sample_id.startswith("hidden") else 1.0) for sample_id in AWKWARD_IDS}
    run = fake_run(tmp_path / "run", data, dropped=["=SUM(1+1)"], scores=scores, with_run_json=True,
                   id_column="id")
    labelscrub.write_audit(run, per_class=5)
    return run


def card(page, sample_id: str):
    return page.locator(f"article.card[data-id={json.dumps(sample_id)}]")


def pick_class(page, on_card, typed: str) -> None:
    """Relabel `on_card` through the page's class picker to the first class whose name contains `typed`."""
    on_card.locator("button.target").click()
    page.locator("#picker input").fill(typed)
    page.locator("#picker input").press("Enter")
    assert page.locator("#picker").is_hidden()


def download(page, folder):
    with page.expect_download() as downloaded:
        page.click("#download")
    path = folder / "decisions.csv"
    downloaded.value.save_as(path)
    return path


def decided(path) -> dict[str, tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["sample_id"]: (row["decision"], row["label"]) for row in csv.DictReader(handle)}


def test_decisions_on_awkward_ids_survive_a_reload_and_download_safe_for_spreadsheets(browser, awkward_run, tmp_path):
    problems: list[str] = []
    page = open_page(browser, awkward_run / "audit.html", problems)
    assert page.locator("#gallery article.card").count() == 10
    card(page, "constructor").locator("select.choice").select_option("relabel")
    pick_class(page, card(page, "constructor"), "do")
    card(page, "__proto__").locator("select.choice").select_option("drop")
    card(page, "=SUM(1+1)").locator("select.choice").select_option("keep")
    card(page, "@cmd").locator("input[type=checkbox]").check()
    assert page.locator("#tally").inner_text() == "3 changed, 1 reviewed"

    page.reload()  # kept in localStorage, "__proto__" and "constructor" included
    assert page.locator("#tally").inner_text() == "3 changed, 1 reviewed"
    assert card(page, "__proto__").locator("select.choice").input_value() == "drop"
    saved = download(page, tmp_path)
    text = saved.read_text(encoding="utf-8")
    assert "\n'=SUM(1+1),keep,cat\n" in text and "\n'@cmd,keep,dog\n" in text  # text, not formulas, in a spreadsheet
    assert decided(saved) == {"constructor": ("relabel", "dog"), "__proto__": ("drop", "dog"),
                              "'=SUM(1+1)": ("keep", "cat"), "'@cmd": ("keep", "dog")}
    assert problems == []

    applied = labelscrub.apply_decisions(awkward_run, saved)  # apply takes the apostrophes off again
    record = json.loads(applied.record_path.read_text())
    assert {entry["sample_id"]: entry["label"] for entry in record["decisions"]} == {
        "constructor": "dog", "__proto__": None, "=SUM(1+1)": "cat", "@cmd": "dog"}


def test_an_imported_decisions_file_shows_on_the_cards_and_downloads_again(browser, awkward_run, tmp_path):
    problems: list[str] = []
    page = open_page(browser, awkward_run / "audit.html", problems)
    bad = tmp_path / "bad.csv"
    bad.write_text("sample_id,decision,label\ntoString,relabel,cat\n__proto__,keep,cat\n")
    page.set_input_files("#import", str(bad))
    assert page.locator("#import-status").inner_text() == (
        'bad.csv not imported: line 3: keep of "__proto__" names "cat", but its label is "dog"; write relabel to '
        "change it")
    assert page.locator("#tally").inner_text() == "0 changed, 0 reviewed"  # nothing of a refused file

    good = tmp_path / "from-elsewhere.csv"
    good.write_text('\ufeffsample_id,decision,label\r\ntoString,relabel,cat\r\n\'-2,drop,\r\n" spaced ",keep,\r\n'
                    "hidden-10,drop,\r\n__proto__,relabel,cat\r\n", encoding="utf-8")
    page.set_input_files("#import", str(good))
    assert page.locator("#import-status").inner_text() == (
        "imported 5 decisions from from-elsewhere.csv (1 for samples without a card here: kept, and downloaded again)")
    assert page.locator("#tally").inner_text() == "3 changed, 4 reviewed"
    to_string = card(page, "toString")
    assert to_string.locator("select.choice").input_value() == "relabel"
    assert to_string.locator("button.target").get_attribute("data-label") == "0"  # cat
    assert card(page, "-2").locator("select.choice").input_value() == "drop"
    assert card(page, " spaced ").locator("input[type=checkbox]").is_checked()
    assert "reviewed" in (card(page, " spaced ").get_attribute("class") or "")

    page.reload()
    assert decided(download(page, tmp_path)) == {
        "toString": ("relabel", "cat"), "'-2": ("drop", "cat"), " spaced ": ("keep", "cat"),
        "__proto__": ("relabel", "cat"), "hidden-10": ("drop", "")}
    assert problems == []
