"""The HTML report: one self-contained page that a real browser opens without errors."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mtrl_bench.cli import main

REPO = Path(__file__).resolve().parents[1]
BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(b)), None)
# CI installs Chromium and sets this, so a missing browser fails there instead of skipping
REQUIRED = os.environ.get("MTRL_BENCH_REQUIRE_BROWSER") == "1"


def browse(page: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu",
                           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
                           *flags, page.as_uri()], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def table1_page(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("html") / "table1"
    here = os.getcwd()
    os.chdir(REPO)  # the committed experiment, named as a user names it
    try:
        assert main(["report", "results/table1", "--out", str(out)]) == 0
    finally:
        os.chdir(here)
    return out / "report.html"


def test_the_page_is_self_contained(table1_page):
    page = table1_page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", page)  # nothing fetched
    assert page.count("<table>") >= 5 and page.count("<img ") >= 3
    for heading in ("(a) Comparison against socodt", "Table 1: Meta-World MT5",
                    "Where each cell comes from", "Written by"):
        assert heading in page
    assert "mtrl-bench report results/table1 --out" in page


@pytest.mark.slow
def test_the_page_opens_in_a_headless_browser_without_errors(table1_page, tmp_path):
    if BROWSER is None:
        if REQUIRED:
            pytest.fail("MTRL_BENCH_REQUIRE_BROWSER=1 but no Chromium on PATH")
        pytest.skip("no Chromium on PATH (CI installs it: apt-get install -y chromium)")
    page = table1_page.read_text()
    shown = browse(table1_page, "--dump-dom")
    console = [line for line in shown.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    dom = shown.stdout
    assert dom.count("<table>") == page.count("<table>")
    images = page.count("<img ")
    assert f'data-images-loaded="{images}"' in dom  # every image decoded

    shot = tmp_path / "laptop.png"
    browse(table1_page, f"--screenshot={shot}", "--window-size=1366,768")
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (768, 1366)
    ink = (pixels[..., :3].mean(axis=-1) < 0.5).mean()  # share of dark (text) pixels
    assert 0.01 < ink < 0.5, ink  # a page of text, neither blank nor a black box
