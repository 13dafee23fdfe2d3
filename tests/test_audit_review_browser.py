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


def said(page, text: str) -> None:
    """Waits until the toolbar's status line says `text` (a file is read in the background), failing if it never
    does."""
    from playwright.sync_api import expect  # imported here: without Playwright the module is skipped, not broken

    expect(page.locator("#status")).to_have_text(text)


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
    said(page, 'bad.csv not imported: line 3: keep of "__proto__" names "cat", but its label is "dog"; write relabel '
               "to change it")
    assert page.locator("#tally").inner_text() == "0 changed, 0 reviewed"  # nothing of a refused file

    good = tmp_path / "from-elsewhere.csv"
    good.write_text('\ufeffsample_id,decision,label\r\ntoString,relabel,cat\r\n\'-2,drop,\r\n" spaced ",keep,\r\n'
                    "hidden-10,drop,\r\n__proto__,relabel,cat\r\n", encoding="utf-8")
    page.set_input_files("#import", str(good))
    said(page, "imported 5 decisions from from-elsewhere.csv (1 for samples without a card here: kept, and "
               "downloaded again)")
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


@pytest.fixture
def three_class_run(tmp_path):
    """s00 ... s11 of cat, dog, bird in turn (sample i of class i % 3), with chosen probabilities of their label;
    the run dropped s00 (cat, suggested dog) and s04 (dog, suggested bird), the most suspicious."""
    ids = [f"s{index:02d}" for index in range(12)]
    data = write_parquet(tmp_path / "data" / "train.parquet", {
        "image": [encode(colour_for(index)) for index in range(12)],
        "label": [index % 3 for index in range(12)],
        "id": ids,
    }, labels_names=["cat", "dog", "bird"])
    p_label = {"s03": 0.9, "s06": 0.8, "s09": 0.7, "s01": 0.95, "s07": 0.5, "s10": 0.6, "s02": 0.1, "s05": 0.99,
               "s08": 0.98, "s11": 0.97}
    run = fake_run(tmp_path / "run", data, dropped=["s00", "s04"], suggested={"s00": 1, "s04": 2},
                   scores={"s00": 3.0, "s04": 2.0}, p_label=p_label, with_run_json=True, id_column="id")
    labelscrub.write_audit(run)
    return run


def state(page, sample_id: str) -> tuple[str, str, bool]:
    """A card's decision, the class it would be relabelled to (index) and whether it is ticked reviewed."""
    shown = card(page, sample_id)
    return (shown.locator("select.choice").input_value(), shown.locator("button.target").get_attribute("data-label"),
            shown.locator("input[type=checkbox]").is_checked())


def current(page) -> str:
    return page.locator("#gallery article.card.current").get_attribute("data-id")


def test_keys_move_between_cards_and_decide_on_the_current_one(browser, three_class_run):
    problems: list[str] = []
    page = open_page(browser, three_class_run / "audit.html", problems)
    assert "1 cat, 2 dog, 3 bird" in page.locator("p.keys").inner_text()  # the help line
    order = page.locator("#gallery article.card").evaluate_all("cards => cards.map(card => card.dataset.id)")
    assert order[:3] == ["s00", "s04", "s03"]  # most suspicious first
    page.keyboard.press("j")
    assert current(page) == "s00"
    for key, expected in (("j", "s04"), ("p", "s00"), ("ArrowDown", "s04"), ("n", "s03"), ("ArrowUp", "s04")):
        page.keyboard.press(key)
        assert current(page) == expected, key
    page.keyboard.press("r")  # the suggestion: bird
    assert state(page, "s04") == ("relabel", "2", False)
    page.keyboard.press("p")
    page.keyboard.press("k")
    page.keyboard.press("x")
    assert state(page, "s00") == ("keep", "0", True)
    page.keyboard.press("x")
    assert state(page, "s00")[2] is False
    page.keyboard.press("d")
    assert state(page, "s00")[0] == "drop"
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("2")  # s03, a cat, to the second class
    assert current(page) == "s03" and state(page, "s03") == ("relabel", "1", False)
    page.keyboard.press("1")  # its own class: kept
    assert state(page, "s03")[0] == "keep"
    assert page.locator("#tally").inner_text() == "1 changed, 0 reviewed"  # s04 relabelled; s00 dropped as before
    assert problems == []


def test_a_picture_opens_large_and_examples_of_both_classes_are_beside_the_suspect(browser, three_class_run):
    problems: list[str] = []
    page = open_page(browser, three_class_run / "audit.html", problems)
    suspect = card(page, "s00")
    labelled, suggested = suspect.locator(".examples").nth(0), suspect.locator(".examples").nth(1)
    assert labelled.inner_text().startswith("labelled cat") and suggested.inner_text().startswith("suggested dog")
    # the most confident samples of each class that the run kept, highest p(label) first
    assert labelled.locator("img").evaluate_all("images => images.map(image => image.alt)") == ["s03", "s06", "s09"]
    assert suggested.locator("img").evaluate_all("images => images.map(image => image.alt)") == ["s01", "s10", "s07"]
    assert suggested.locator("img").first.get_attribute("title") == "s01 (p 0.95)"

    suspect.locator("img.picture").click()
    large = page.locator("#lightbox")
    assert large.is_visible() and large.locator("img").get_attribute("src") == \
        suspect.locator("img.picture").get_attribute("src")
    page.keyboard.press("k")  # the page's keys wait while it is open
    assert state(page, "s00")[0] == "drop" and page.locator("#tally").inner_text() == "0 changed, 0 reviewed"
    page.keyboard.press("Escape")
    assert large.is_hidden()
    suggested.locator("img").first.click()  # an example opens large too
    assert large.is_visible() and large.locator("div").inner_text() == "s01"
    page.keyboard.press("Escape")
    assert large.is_hidden() and problems == []


def test_every_suggestion_shown_is_accepted_or_every_card_shown_kept_at_once(browser, three_class_run, tmp_path):
    problems: list[str] = []
    page = open_page(browser, three_class_run / "audit.html", problems)
    page.select_option("#filter-status", "dropped")
    assert page.locator("#gallery article.card").count() == 2
    card(page, "s00").locator("select.choice").select_option("keep")  # a decision by hand
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#accept-shown")
    assert problems == ["dialog: suggestions accepted: this replaces 1 of your decisions."]  # asked first
    assert state(page, "s00")[:2] == ("relabel", "1") and state(page, "s04")[:2] == ("relabel", "2")
    assert page.locator("#status").inner_text() == "suggestions accepted: 2 of the 2 cards shown"

    problems.clear()
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#keep-shown")  # replaces both: asked, and refused
    assert len(problems) == 1 and state(page, "s00")[0] == "relabel"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#keep-shown")
    assert state(page, "s00")[0] == "keep" and state(page, "s04")[0] == "keep"
    assert decided(download(page, tmp_path)) == {"s00": ("keep", "cat"), "s04": ("keep", "dog")}
