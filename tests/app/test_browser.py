"""The viewer in a real browser: served by ``streamlit run`` on localhost, opened in headless Debian Chromium;
every page is visited at 1400 x 900 (a laptop window), screenshotted and checked for an exception box and for a page
wider than the window.

Needs ``apt-get install -y chromium`` (``/usr/bin/chromium``) and ``pip install playwright`` (its Python driver
only; the system Chromium is used, so no ``playwright install``). Skipped with the reason when either is absent.
``BIAS_ATLAS_SCREENSHOTS=docs/figures`` keeps the screenshots (``viewer_<page>.png``, as in docs/VIEWER.md);
``BIAS_ATLAS_BROWSER_RUNS=runs`` serves that folder instead of the test run (the demo, for the docs' pictures).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 180_000  # first render: imports, table reads and figure drawing on a busy CPU


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.returncode}: {server.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")


@pytest.fixture()
def served(demo_run):
    """``streamlit run app.py -- <runs>`` on a free localhost port; terminated after the test, whatever happens."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: apt-get install -y chromium")
    pytest.importorskip("playwright.sync_api", reason="no playwright: pip install playwright")
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(REPO / "app.py"),
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",  # edits elsewhere in the tree must not rerun the page mid-test
        "--",
        os.environ.get("BIAS_ATLAS_BROWSER_RUNS") or str(demo_run.parent),  # e.g. runs/ for the docs' screenshots
    ]
    server = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


_BUSY = "!!(document.querySelector('[data-testid=\"stStatusWidget\"]') || document.querySelector('[data-testid=\"stSpinner\"]'))"


def _settled(page, quiet_ms: int = 1500) -> None:
    """Wait until the script run is over: neither Streamlit's running indicator nor a spinner has been seen for
    ``quiet_ms`` (a run may start a moment after a click, and a cached function shows its own spinner)."""
    deadline, quiet = time.monotonic() + TIMEOUT_MS / 1000, 0
    while quiet < quiet_ms:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page was still running after {TIMEOUT_MS / 1000:.0f} s")
        page.wait_for_timeout(250)
        quiet = 0 if page.evaluate(_BUSY) else quiet + 250


def test_overview_table_and_heatmap_render_in_chromium(served, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(served)
            page.wait_for_selector('[data-testid="stDataFrame"]', timeout=TIMEOUT_MS)
            page.wait_for_selector('[data-testid="stImage"] img', timeout=TIMEOUT_MS)
            _settled(page)
            table = page.locator('[data-testid="stDataFrame"]').first
            assert table.is_visible()
            assert "teacher-ft" in page.locator('[data-testid="stDataFrame"] table').first.inner_text()
            page.screenshot(path=tmp_path / "overview.png")

            page.get_by_role("tab", name="Heads").click()
            heatmap = page.locator('[data-testid="stImage"]', has_text="heads_delta_score_compare")
            heatmap.wait_for(timeout=TIMEOUT_MS)
            _settled(page)
            image = heatmap.locator("img")
            assert image.is_visible()
            assert image.evaluate("img => img.complete && img.naturalWidth > 0")  # loaded and decoded
            assert image.bounding_box()["width"] > 600  # a double-column figure across the main column
            shot = tmp_path / "viewer.png"
            page.screenshot(path=shot)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("BIAS_ATLAS_SCREENSHOT"):  # e.g. docs/figures/viewer.png, to refresh the README's picture
        shutil.copy(shot, os.environ["BIAS_ATLAS_SCREENSHOT"])


@pytest.mark.slow  # 35 s: keeps the default suite under 10 minutes; the AppTest suite renders every page too
def test_every_page_renders_without_an_exception_box(served, tmp_path):
    from playwright.sync_api import sync_playwright

    from app import PAGES

    shots = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})  # a laptop window
            page.goto(served)
            page.wait_for_selector('[data-testid="stDataFrame"]', timeout=TIMEOUT_MS)
            for name in PAGES:
                page.get_by_role("tab", name=name, exact=True).click()
                _settled(page)
                assert page.locator('[data-testid="stException"]').count() == 0, name
                assert page.locator('[data-testid="stAlertContentError"]').count() == 0, name
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= 1400, (name, width)  # nothing wider than the window: no sideways page scroll
                images = page.locator('[data-testid="stImage"] img')
                assert all(
                    images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0") for i in range(images.count())
                ), name
                shot = tmp_path / f"viewer_{name.lower().replace(' ', '_')}.png"
                page.screenshot(path=shot, full_page=True)
                shots.append(shot)
        finally:
            browser.close()
    assert len(shots) == len(PAGES) and all(s.stat().st_size > 10_000 for s in shots)
    if os.environ.get("BIAS_ATLAS_SCREENSHOTS"):  # e.g. docs/figures: the pictures of docs/VIEWER.md
        for shot in shots:
            shutil.copy(shot, Path(os.environ["BIAS_ATLAS_SCREENSHOTS"]) / shot.name)
