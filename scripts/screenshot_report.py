"""Open a report.html in headless Chromium and save a screenshot of it.

    python scripts/screenshot_report.py REPORT.html SHOT.png [--chromium PATH]

The page must render offline: Chromium runs with networking features off and a throwaway
profile, so an image that is not embedded or beside the page shows as broken. Install the
browser with ``apt-get install -y chromium`` (Debian). Exit status 0 when the PNG was
written, 1 when Chromium failed, 2 when it or the page cannot be found.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW_SIZE = "1280,4000"
TIMEOUT_S = 120


def find_chromium() -> str | None:
    """The first Chromium-like browser on PATH, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(page: Path, out: Path, chromium: str, *, window_size: str = WINDOW_SIZE) -> Path:
    """Render ``page`` with headless ``chromium`` into the PNG ``out``.

    Raises:
        RuntimeError: Chromium exited with an error or wrote no screenshot.
    """
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="report-chromium-") as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={window_size}",
            page.resolve().as_uri(),
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    if result.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"Chromium exited with {result.returncode} and no screenshot: {last}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="the report.html to open")
    parser.add_argument("out", type=Path, help="where to write the PNG screenshot")
    parser.add_argument("--chromium", default=None, help="browser executable (default: PATH)")
    args = parser.parse_args(argv)
    chromium = args.chromium or find_chromium()
    if chromium is None:
        print(
            "Error: no Chromium found; install it with apt-get install -y chromium.",
            file=sys.stderr,
        )
        return 2
    if not args.page.is_file():
        print(f"Error: the page {args.page} does not exist.", file=sys.stderr)
        return 2
    try:
        shot = screenshot(args.page, args.out, chromium)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(shot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
