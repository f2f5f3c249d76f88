"""`quantbench report` on a hand-made results folder: both formats, plots, and the page rendered in Chromium."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from xml.etree import ElementTree

import pytest

from quantbench.cli import main
from tests.analysis.builders import DEMO_PRICES, demo_variants, write_run

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = REPO / "out" / "report"  # ignored by git; kept so a person can look at the page


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = write_run(tmp_path_factory.mktemp("results"), demo_variants(), "bf16", prices=DEMO_PRICES)
    out = results / "report"
    assert main(["report", str(results), "--format", "md,html", "--out", str(out)]) == 0
    return out


def test_markdown_report(report_dir: Path) -> None:
    md = (report_dir / "report.md").read_text()
    assert md.startswith("# QuantBench report: llama31-8b (r20261123-0300)")
    assert "| Variant | Precision | Kernel | ms/token (bs=1) |" in md
    assert "| fp8 | fp8 | fp8 | 6.00 [5.58, 6.46] | 1.67x [1.57, 1.77] |" in md
    assert "**fp8: free speedup.**" in md
    assert "**awq-int4: latency win, loses under load.**" in md and "from about batch size 27" in md
    assert "**gptq-int4: speedup, accuracy inferior.**" in md and "(p < 0.001)" in md
    assert "| non-inferior (≥ " in md and "| inferior (≤ " in md
    # Capacity per GPU (quality-gated), goodput, cost and the recommendation with its figures.
    assert "| 0.0021 / 98.5% | 11.3 | 2,600 | $0.321 |" in md
    assert "5.66 (not counted)" in md
    assert "fp8: $0.32 per million output tokens at 11.3 requests/s per GPU" in md
    assert "![capacity](plots/capacity.svg)" in md
    assert "**awq-legacy: slow kernel, rerun.**" in md and "awq_marlin" in md
    assert "**int8: memory win only.**" in md
    assert "**fp16: failed.** fp16 failed: OutOfMemory" in md
    for stem in ("throughput", "ttft", "itl", "accuracy", "memory"):
        assert f"![{stem}](plots/{stem}.svg)" in md
        ElementTree.parse(report_dir / "plots" / f"{stem}.svg")  # well-formed SVG


def test_html_report_is_self_contained(report_dir: Path) -> None:
    html = (report_dir / "report.html").read_text()
    assert html.count("<svg ") == 6  # throughput, ttft, itl, capacity, accuracy, memory
    assert (
        "<script" not in html
        and "src=" not in html
        and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    )
    assert "free speedup" in html and "OutOfMemory" in html
    assert (report_dir / "summary.json").is_file()


def test_report_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 1
    assert "run.json: missing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", str(tmp_path), "--format", "pdf"])


def _png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and the decompressed scanlines of a PNG (enough to see it is not blank)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, zlib.decompress(idat)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("headless Chromium is needed to render the report: apt-get install -y chromium")


@pytest.mark.slow
def test_html_report_renders_in_chromium(report_dir: Path, tmp_path: Path) -> None:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOT_DIR / "report.png"
    shot.unlink(missing_ok=True)
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--hide-scrollbars",
        "--window-size=1320,2600",
        f"--screenshot={shot}",
        (report_dir / "report.html").as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    width, height, pixels = _png_pixels(shot)
    assert (width, height) == (1320, 2600)
    # A blank or error page is a few colours; the report has text, tables, and five coloured charts.
    assert len(set(pixels[::997])) > 40
    shutil.copy(report_dir / "report.html", SCREENSHOT_DIR / "report.html")
