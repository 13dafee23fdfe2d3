"""The audit page of a run with 1,000 classes and 1,000,000 samples (made up, no pictures, see
runfolders.synthetic_run): it is built in bounded time and memory, keeps the gallery under its cap, and relabels
through the page's one class picker in a real browser."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pagebrowser import browser_missing, launched_chromium, open_page
from runfolders import synthetic_run

from labelscrub.audit import MAX_SHOWN

CLASSES = 1000
SAMPLES = 1_000_000
WORDS = ["heron", "otter", "maple", "quartz", "tulip", "falcon", "cedar", "lynx"]
MAX_SECONDS = 60  # generous: about 2 s on a laptop core
MAX_EXTRA_BYTES = 2 * 2**30

# A page of a million samples takes seconds to build: out of the fast loop
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not Path("/proc/self/status").exists(),
                                                  reason="measures memory through /proc (Linux)")]

# Builds the page in a fresh process, so its peak memory is the page's alone. The peak is VmHWM, the high-water mark
# of this process's memory (ru_maxrss would also count what pytest held when it forked the process).
MEASURE = textwrap.dedent("""
    import json, re, sys, time
    import labelscrub

    def peak():
        with open("/proc/self/status") as status:
            return int(re.search(r"VmHWM:\\s+(\\d+) kB", status.read()).group(1)) * 1024

    before = peak()
    started = time.perf_counter()
    result = labelscrub.write_audit(sys.argv[1])
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "extra_bytes": peak() - before, "cards": result.cards}))
""")


@pytest.fixture(scope="module")
def big_page(tmp_path_factory):
    """The synthetic run and the measurements of building its page."""
    names = [f"{WORDS[index % len(WORDS)]}-{index:04d}" for index in range(CLASSES)]
    run = synthetic_run(tmp_path_factory.mktemp("big") / "run", class_names=names, samples=SAMPLES)
    finished = subprocess.run([sys.executable, "-c", MEASURE, str(run)], capture_output=True, text=True,
                              timeout=10 * MAX_SECONDS)
    assert finished.returncode == 0, finished.stderr
    return run, json.loads(finished.stdout.strip().splitlines()[-1])


def test_a_page_of_a_thousand_classes_and_a_million_samples_is_built_in_bounded_time_and_memory(big_page, capsys):
    run, measured = big_page
    with capsys.disabled():
        print(f"\naudit page of {CLASSES:,} classes x {SAMPLES:,} samples: {measured['seconds']:.1f} s, "
              f"{measured['extra_bytes'] / 2**20:.0f} MiB peak memory above the interpreter's")
    assert measured["seconds"] < MAX_SECONDS and measured["extra_bytes"] < MAX_EXTRA_BYTES
    page = (run / "audit.html").read_text()
    assert measured["cards"] == MAX_SHOWN  # two per class would be 2,000 too; the cap holds either way
    assert "2 samples of each class with the highest scores, 2,000 in all" in page


@pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))
def test_the_one_class_picker_relabels_a_card_to_a_class_found_by_part_of_its_name(big_page, tmp_path):
    run, _ = big_page
    problems: list[str] = []
    with launched_chromium() as browser:
        page = open_page(browser, run / "audit.html", problems)
        assert page.locator("#gallery article.card").count() == 120
        # one list for the page, not one <select> of 1,000 classes per card
        assert page.evaluate("document.querySelectorAll('option').length") < 2 * CLASSES

        first = page.locator("#gallery article.card").first
        first_id = first.get_attribute("data-id")
        first.locator("select.choice").select_option("relabel")
        first.locator("button.target").click()
        page.locator("#picker input").fill("0417")
        assert page.locator("#picker li").all_inner_texts() == ["otter-0417"]
        page.locator("#picker input").press("Enter")
        assert first.locator("button.target").inner_text().startswith("otter-0417")
        assert page.locator("#tally").inner_text() == "1 changed, 0 reviewed"

        first.locator("button.target").click()  # typing little lists the first matches and says how many more
        page.locator("#picker input").fill("heron")
        assert page.locator("#picker li").count() == 50
        assert page.locator("#picker .more").inner_text() == "75 more: type to narrow"
        page.locator("#picker input").press("Escape")
        assert page.locator("#picker").is_hidden() and first.locator("button.target").inner_text().startswith("otter")

        with page.expect_download() as downloaded:
            page.click("#download")
        saved = tmp_path / "decisions.csv"
        downloaded.value.save_as(saved)
    assert saved.read_text().splitlines() == ["sample_id,decision,label", f"{first_id},relabel,otter-0417"]
    assert problems == []
