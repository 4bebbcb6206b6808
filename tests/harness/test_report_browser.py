"""report.html in a real browser: headless Chromium renders the page of a fake run,
takes a screenshot, and dumps the DOM it built (the ``chromium`` fixture is in
conftest.py; it installs Debian's package where it can and skips where it cannot)."""

from __future__ import annotations

import base64
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.report import write_report
from harness.report.render import SECTIONS
from tests.harness.test_report import make_run

WIDTH, HEIGHT = 1280, 2000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BROWSER_TIMEOUT_S = 60

# Debian's chromium headless in a container with no network: no sandbox (root),
# no GPU, none of the background fetches it would otherwise try, one CSS pixel
# per device pixel so the screenshot is exactly the window size.
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    f"--window-size={WIDTH},{HEIGHT}",
    # let virtual time run until the page (its inline PNGs included) has loaded
    "--virtual-time-budget=5000",
)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, the first after the signature."""
    assert data[:8] == PNG_SIGNATURE, data[:8]
    assert data[12:16] == b"IHDR", data[12:16]
    return struct.unpack(">II", data[16:24])


class _Outline(HTMLParser):
    """The h2/h3 headings' text and every img's src of a document."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: dict[str, list[str]] = {"h2": [], "h3": []}
        self.images: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag in self.headings:
            self._open = tag
            self.headings[tag].append("")
        elif tag == "img":
            self.images.append(dict(attrs).get("src") or "")

    def handle_endtag(self, tag):
        if tag == self._open:
            self._open = None

    def handle_data(self, data):
        if self._open:
            self.headings[self._open][-1] += data


@pytest.fixture(scope="module")
def rendered(chromium, tmp_path_factory) -> dict:
    """The report's screenshot and DOM, and a blank page's screenshot taken the same way;
    the three browsers run side by side."""
    tmp = tmp_path_factory.mktemp("browser")
    html = write_report(make_run(tmp_path_factory.mktemp("run")))["html"]
    blank = tmp / "blank.html"
    blank.write_text('<!doctype html><html lang="en"><head><meta charset="utf-8"></head></html>\n')

    def start(name: str, page: Path, *args: str) -> subprocess.Popen:
        profile = tmp / f"profile-{name}"  # a fresh profile for every browser
        cmd = [chromium, *HEADLESS_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()]
        return subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp
        )

    shots = {"report": tmp / "report.png", "blank": tmp / "blank.png"}
    procs = {
        "report": start("report", html, f"--screenshot={shots['report']}"),
        "blank": start("blank", blank, f"--screenshot={shots['blank']}"),
        "dom": start("dom", html, "--dump-dom"),
    }
    out = {}
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=BROWSER_TIMEOUT_S)
            assert proc.returncode == 0, f"chromium ({name}) exited {proc.returncode}:\n{stderr}"
            out[name] = stdout
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for name, path in shots.items():
        assert path.is_file(), f"chromium wrote no screenshot of the {name} page"
    return {
        "html": html,
        "report_png": shots["report"].read_bytes(),
        "blank_png": shots["blank"].read_bytes(),
        "dom": out["dom"],
    }


def test_screenshot_has_the_window_size_and_is_not_blank(rendered):
    report, blank = rendered["report_png"], rendered["blank_png"]
    assert png_size(report) == (WIDTH, HEIGHT)
    assert png_size(blank) == (WIDTH, HEIGHT)
    # a blank page compresses to almost nothing; text, tables and figures do not
    assert len(report) > 10 * len(blank), (len(report), len(blank))


def test_dom_has_every_section_and_only_inline_png_images(rendered):
    dom = rendered["dom"]
    assert "<html" in dom[:100] and dom.rstrip().endswith("</html>"), dom[:200]
    outline = _Outline()
    outline.feed(dom)
    h2 = [h.strip() for h in outline.headings["h2"]]
    h3 = [h.strip() for h in outline.headings["h3"]]
    assert h2 == list(SECTIONS)
    assert "xor" in h3 and "xor_single_layer" in h3
    # the curves of xor, step time and first step (xor_single_layer has no curve)
    assert len(outline.images) >= 3, outline.images
    prefix = "data:image/png;base64,"
    for src in outline.images:
        assert src.startswith(prefix), src[:80]
        width, height = png_size(base64.b64decode(src[len(prefix) :]))
        assert width >= 300 and height >= 150, (width, height)
