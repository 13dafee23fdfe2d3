"""The audit page of the sample run in a real browser (headless Chromium driven by Playwright): it loads without
errors, shows what run.json says, filters, remembers decisions and downloads a decisions.csv that `labelscrub
apply` turns into a manifest.

Needs a browser and Playwright (tests/pagebrowser.py says which); without them the test is skipped and says why.
"""

import csv
import json
from pathlib import Path

import pytest
from pagebrowser import browser_missing, launched_chromium, open_page

import labelscrub
from labelscrub.report import read_report_metadata

# Decided before any fixture runs, so a machine without a browser skips without cleaning the sample first.
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))]


@pytest.fixture
def browser():
    with launched_chromium() as launched:
        yield launched


def test_review_the_sample_run_in_a_browser_and_apply_the_decisions(folder_run, browser, tmp_path):
    run_dir, _ = folder_run
    run = json.loads((run_dir / "run.json").read_text())
    page_file = run_dir / "audit.html"
    assert page_file.exists()  # clean wrote it

    problems: list[str] = []
    page = open_page(browser, page_file, problems)

    counts = run["counts"]
    assert page.locator('[data-count="samples"]').inner_text() == f"{counts['samples']:,}"
    assert page.locator('[data-count="dropped"]').inner_text().startswith(f"{counts['dropped']:,} (")
    assert page.locator('[data-count="unreadable"]').inner_text().startswith(f"{counts['unreadable']:,} (")
    for name, entry in run["noise"]["classes"].items():
        assert page.locator(f'#classes tr[data-class="{name}"] td[data-dropped]').inner_text() == str(entry["dropped"])
    assert page.locator("#matrix svg.heatmap rect").count() > 0
    assert page.locator("#curves svg.chart polyline").count() >= 2
    cards = page.locator("#gallery article.card")
    in_all = len(json.loads(page.locator("#audit-data").text_content())["cards"])
    total = cards.count()  # the first page of them; more as one scrolls or presses "Show more"
    assert total == min(120, in_all) and page.locator("#shown").inner_text() == f"{total} of {in_all} shown"
    assert page.locator("#gallery img.picture").count() == total  # every card has its picture
    if in_all > total:  # scrolling down to the end of the gallery shows more
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        page.wait_for_function(f"document.querySelectorAll('#gallery article.card').length > {total}")
        assert cards.count() <= in_all

    page.select_option("#filter-class", label="3")
    shown = cards.count()
    assert 0 < shown < total
    labels = cards.locator("div:nth-child(3)").all_inner_texts()
    assert len(labels) == shown and all(text.startswith("label: 3") for text in labels)

    page.select_option("#filter-status", "dropped")
    first, second = cards.nth(0), cards.nth(1)
    first_id, second_id = first.locator(".id").inner_text(), second.locator(".id").inner_text()
    first.locator("select.choice").select_option("keep")
    second.locator("select.choice").select_option("relabel")
    second.locator("button.target").click()  # the page's class picker, filtered as one types
    page.locator("#picker input").fill("8")
    page.locator("#picker li", has_text="8").click()
    second.locator("input[type=checkbox]").check()
    assert page.locator("#tally").inner_text() == "2 changed, 1 reviewed"

    page.reload()  # decisions survive it
    assert page.locator("#tally").inner_text() == "2 changed, 1 reviewed"
    with page.expect_download() as download:
        page.click("#download")
    decisions = tmp_path / "decisions.csv"
    download.value.save_as(decisions)
    with decisions.open(newline="") as handle:
        rows = {row["sample_id"]: row for row in csv.DictReader(handle)}
    assert rows == {first_id: {"sample_id": first_id, "decision": "keep", "label": "3"},
                    second_id: {"sample_id": second_id, "decision": "relabel", "label": "8"}}
    assert problems == []

    applied = labelscrub.apply_decisions(run_dir, decisions, out=tmp_path / "applied")
    with applied.manifest_path.open(newline="") as handle:
        data = Path(read_report_metadata(run_dir / "report.parquet")["data"])  # absolute, as the manifest's paths
        manifest = {Path(row["path"]).relative_to(data).as_posix(): row["label"]
                    for row in csv.DictReader(handle)}
    assert manifest[first_id] == "3" and manifest[second_id] == "8"
    # both were dropped by the run: back in the manifest unless --relabel had already put them back
    with (run_dir / "manifest.csv").open(newline="") as handle:
        in_run_manifest = {Path(row["path"]).relative_to(data).as_posix() for row in csv.DictReader(handle)}
    assert len(manifest) == counts["in_manifest"] + len({first_id, second_id} - in_run_manifest)

