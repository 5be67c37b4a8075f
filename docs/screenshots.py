"""Retake the feature browser's screenshots on docs/browser.md from a finished warehouse (the tiny run's).

    python docs/screenshots.py WAREHOUSE                  # lua-sae feature 2025, into docs/
    python docs/screenshots.py WAREHOUSE --sae base-sae --feature 7 --out /tmp/shots
    python docs/screenshots.py warehouse-real --prefix real --pages base-sae:12 lua-sae:40   # real-data.md

Starts `featstore serve` on a free loopback port and drives Debian's Chromium through Playwright (no
browser download): browser-lineage.png is the lineage page, browser-feature.png the feature page as it
opens, on the slice of its strongest activations. With --pages SAE:FEATURE ..., each of those feature
pages instead, as PREFIX-SAE-FEATURE.png. The warehouse is only read.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1100, "height": 860}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(server: subprocess.Popen, port: int, seconds: float = 120) -> None:
    """Until the server accepts connections (it indexes every partition first)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"featstore serve did not start: {server.stdout.read()}")
            time.sleep(0.2)


def shots(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(file name part, URL path) of each screenshot to take."""
    if args.pages:
        return [(page.replace(":", "-"), "/sae/{}/feature/{}".format(*page.split(":"))) for page in args.pages]
    return [("lineage", "/"), ("feature", f"/sae/{args.sae}/feature/{args.feature}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warehouse", type=Path)
    parser.add_argument("--sae", default="lua-sae")
    parser.add_argument("--feature", type=int, default=2025)
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--prefix", default="browser", help="start of each file name")
    parser.add_argument("--pages", nargs="+", default=None, metavar="SAE:FEATURE",
                        help="feature pages to take instead of the lineage page and --sae/--feature")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    server = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "--warehouse", str(args.warehouse), "serve",
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_up(server, port)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport=VIEWPORT)
            for name, path in shots(args):
                page.goto(f"http://127.0.0.1:{port}{path}")
                page.screenshot(path=args.out / f"{args.prefix}-{name}.png")
                print(args.out / f"{args.prefix}-{name}.png")
            browser.close()
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
