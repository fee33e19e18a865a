"""The app in a background ``streamlit run`` server, for scripted browser sessions.

Used by the browser test and the responsiveness benchmark; people start the app with
``streamlit run app.py``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["app_server", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def app_server(cache: str, *, small: bool = False, log: str | os.PathLike | None = None,
               start_timeout: float = 120.0) -> Iterator[str]:
    """Run ``streamlit run app.py`` on the results in ``cache``; yield its URL; stop it after.

    ``small`` opens the small demo by default. The server's output goes to ``log`` (or is
    dropped). Raises RuntimeError when the server exits or does not answer its health check
    within ``start_timeout`` seconds.
    """
    port = free_port()
    env = {**os.environ, "ALIGNMENT_CACHE": str(cache), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    if small:
        env["ALIGNMENT_DEMO_SMALL"] = "1"
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}" + (f"; see {log}" if log else ""))
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=5) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not answer within {start_timeout:g} s")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        if log:
            out.close()
