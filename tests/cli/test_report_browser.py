"""``report.html`` of ``custscore evaluate`` in a real browser: Debian's headless Chromium.

The report is one self-contained file (PNG plots as data URIs). Its script sets
``document.body.dataset.plots = "<loaded>/<total>"`` once every ``<img>`` has loaded or failed,
and puts a caption with class ``plot-broken`` under each image that failed. Chromium's
``--dump-dom`` after a virtual-time budget shows that attribute, so the test reads what a person
would see: every plot loaded, none broken. A copy with one plot's bytes corrupted shows that the
check can fail. A screenshot is saved under the test's tmp dir (its path is printed).

Chromium comes from Debian's ``chromium`` package, installed with apt-get when missing (CI runs
as root on this machine kind); the test skips only where apt-get is not available.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from fixtures.apt import apt_install
from fixtures.evaluation import CdnowEvaluation

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

BROKEN_CLASS = "plot-broken"
_PLOTS = re.compile(r'<body[^>]*\sdata-plots="(\d+)/(\d+)"')
_IMG_DATA = re.compile(r'(src="data:image/png;base64,)([A-Za-z0-9+/=]+)(")')
_CODE = re.compile(r"<(script|style)\b.*?</\1>", re.S | re.I)
_BROKEN = re.compile(rf'<\w+[^>]*\sclass="[^"]*\b{BROKEN_CLASS}\b')


# --------------------------------------------------------------------------- Chromium


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of Debian's chromium; installs it (and a font for the text) when it is missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        apt_install("chromium", "fonts-dejavu-core", what="Chromium")
        found = shutil.which("chromium")
        assert found, "the chromium package installed no chromium command"
    return found


@dataclass(frozen=True)
class Page:
    dom: str
    loaded: int
    total: int
    broken: int


def _headless(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run: no sandbox (root), no GPU, nothing fetched from the network."""
    argv = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
        f"--user-data-dir={profile}", *args,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done


def open_page(chromium: str, html: Path, profile: Path) -> Page:
    """The DOM after load (5 s of virtual time: every data-URI image has loaded or failed)."""
    done = _headless(chromium, profile, "--dump-dom", "--virtual-time-budget=5000",
                     html.resolve().as_uri())
    dom = _CODE.sub("", done.stdout)  # the markup only: no script or style text
    found = _PLOTS.search(dom)
    assert found, f"report.html set no data-plots on <body>: {dom[:600]!r}"
    return Page(dom, int(found.group(1)), int(found.group(2)), len(_BROKEN.findall(dom)))


def screenshot(chromium: str, html: Path, profile: Path, png: Path) -> Path:
    _headless(chromium, profile, f"--screenshot={png}", "--window-size=1280,2000",
              "--virtual-time-budget=5000", html.resolve().as_uri())
    return png


def _corrupt_first_plot(html: str) -> str:
    """The same report with the first plot's PNG bytes replaced by garbage (valid base64)."""
    replaced, count = _IMG_DATA.subn(lambda m: m.group(1) + "bm90IGEgUE5H" + m.group(3), html, 1)
    assert count == 1, "report.html has no <img src=\"data:image/png;base64,...\">"
    return replaced


# --------------------------------------------------------------------------- the report


@pytest.fixture(scope="module")
def report_html(cdnow_evaluation: CdnowEvaluation) -> Path:
    """``custscore evaluate`` on CDNOW, the standard split (one run per session)."""
    html = cdnow_evaluation.out / "report.html"
    assert html.is_file(), sorted(p.name for p in cdnow_evaluation.out.iterdir())
    return html


def test_every_plot_loads_in_chromium(chromium: str, report_html: Path, tmp_path: Path) -> None:
    page = open_page(chromium, report_html, tmp_path / "profile")
    assert page.total > 0, "report.html has no plots"
    assert (page.loaded, page.broken) == (page.total, 0), page.dom[-2000:]
    # self-contained: every image is inline, nothing is fetched from anywhere
    sources = re.findall(r'<img[^>]*\ssrc="([^"]*)"', page.dom)
    assert len(sources) == page.total
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'<(?:link|script)[^>]*\s(?:href|src)="(?!data:)[^"]+"', page.dom)

    png = screenshot(chromium, report_html, tmp_path / "profile", tmp_path / "report.png")
    _assert_not_blank(png)
    print(f"\nscreenshot of report.html ({page.loaded}/{page.total} plots): {png}")


def test_a_broken_plot_is_seen(chromium: str, report_html: Path, tmp_path: Path) -> None:
    """The check above can fail: one corrupted plot shows as broken, and not as loaded."""
    broken = tmp_path / "report-broken.html"
    broken.write_text(_corrupt_first_plot(report_html.read_text(encoding="utf-8")),
                      encoding="utf-8")
    page = open_page(chromium, broken, tmp_path / "profile")
    assert page.total > 0
    assert (page.loaded, page.broken) == (page.total - 1, 1), page.dom[-2000:]


def _assert_not_blank(png: Path) -> None:
    """A real PNG of the page: the right size, with ink on it (text and plots, not all white)."""
    import numpy as np
    from matplotlib import image

    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, (png, len(data))
    pixels = image.imread(png)
    assert pixels.shape[:2] == (2000, 1280), pixels.shape
    ink = np.any(pixels[..., :3] < 0.9, axis=-1).mean()
    assert ink > 0.003, f"screenshot is nearly blank ({ink:.2%} ink): {png}"
