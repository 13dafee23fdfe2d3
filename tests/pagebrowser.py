"""Headless Chromium for the tests of the audit page, driven by Playwright.

Needs Debian's `chromium` (apt-get install -y chromium; .ci/run installs it) and Playwright for Python (in the test
extra). Without them the browser tests are skipped and say why. LABELSCRUB_CHROMIUM names another browser binary.
"""

import importlib.util
import os
import shutil
from contextlib import contextmanager

CHROMIUM = os.environ.get("LABELSCRUB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
# Quiet and self-contained: no sandbox (tests run as root in containers), no GPU, nothing fetched in the background
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed: pip install -e \".[test]\""
    if CHROMIUM is None or not os.path.exists(CHROMIUM):
        return "no Chromium browser found: apt-get install -y chromium (or set LABELSCRUB_CHROMIUM)"
    return None


@contextmanager
def launched_chromium():
    """A launched browser, closed on leaving the block."""
    from playwright.sync_api import sync_playwright  # imported here: without it the tests are skipped, not broken

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, path, problems: list[str]):
    """`path` (an audit.html) in a new tab that accepts downloads; script errors, console errors and dialogs are
    added to `problems`, which a test expects to stay empty."""
    page = browser.new_page(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("dialog", lambda dialog: problems.append(f"dialog: {dialog.message}"))
    page.goto(path.as_uri())
    return page
