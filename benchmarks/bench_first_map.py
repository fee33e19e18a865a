"""A new user's first start: ``streamlit run app.py`` on an empty cache until the first map is drawn.

    python benchmarks/bench_first_map.py [--small] [--chromium /usr/bin/chromium]

Starts the app on a fresh, temporary cache, opens it in headless chromium (playwright) and
times, from the server's start: its health check answering, the "preparing the demo" message,
the build's first stored result (the opened layer's ``encoding_fit``; read from the cache
folder) and the first cortical map drawn on the Overview (its WebGL surface view). The demo keeps
computing in the background; the benchmark then reads how far it got (units done of total),
stops it and removes the cache. ``--small`` uses the small demo (the one the tests use).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from alignment.background import read_status  # noqa: E402
from alignment.serve import app_server  # noqa: E402

# the Overview's surface view on the page, before it has drawn
PLOT_ELEMENT = "() => !!document.querySelector('.st-key-ov-surface')"
# a cortical map drawn (ui/surface.js marks its element)
MESH_SHOWS = "() => !!document.querySelector('[data-surface-drawn]')"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="the small demo")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the first map")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    cache = tempfile.mkdtemp(prefix="first-map-")
    start = time.monotonic()
    marks = {}
    done = threading.Event()

    def watch_cache():  # the first result the build stores
        while not done.is_set():
            if next(Path(cache).glob("encoding_fit/*/*/meta.json"), None) is not None:
                marks["first result stored"] = time.monotonic() - start
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=watch_cache, daemon=True)
    watcher.start()
    try:
        with app_server(cache, small=args.small, start_timeout=300) as url, sync_playwright() as p:
            marks["server answers"] = time.monotonic() - start
            browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1500, "height": 1400})
            page.goto(url, timeout=args.timeout * 1000)
            page.get_by_text("Preparing the simulated demo").wait_for(timeout=args.timeout * 1000)
            marks["'preparing' message"] = time.monotonic() - start
            page.wait_for_function(PLOT_ELEMENT, timeout=args.timeout * 1000, polling=200)
            marks["plot element on the page"] = time.monotonic() - start
            page.wait_for_function(MESH_SHOWS, timeout=args.timeout * 1000, polling=200)
            marks["first map drawn"] = time.monotonic() - start
            status = read_status(cache, small=args.small)
            browser.close()
        for what, seconds in sorted(marks.items(), key=lambda item: item[1]):
            print(f"{what:24s} {seconds:7.1f} s")
        print(f"the background build then: {status.text() if status else 'no status'}")
    finally:
        done.set()  # the cache watcher stops before the cache is removed
        watcher.join()
        status = read_status(cache, small=args.small)
        if status is not None and status.active:
            os.killpg(status.pid, signal.SIGTERM)
            time.sleep(1)
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
