"""The viewer in a real browser: served by ``streamlit run`` on localhost, opened in headless Debian Chromium.

Needs ``apt-get install -y chromium`` (``/usr/bin/chromium``) and ``pip install playwright`` (its Python driver
only; the system Chromium is used, so no ``playwright install``). Skipped with the reason when either is absent.
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
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
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
    command = [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless", "true",
               "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
               "--", str(demo_run.parent)]
    server = subprocess.Popen(command, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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


def _settled(page) -> None:
    """Wait until the script run is over: Streamlit's running indicator is gone."""
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=TIMEOUT_MS)


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
