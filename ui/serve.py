"""Serves the app: ``python -m ui.serve [streamlit options]`` is ``streamlit run app.py`` with
the warm-up already under way when the first visitor arrives.

Both commands serve the same app, deep links included (see :mod:`ui.navigation`). The warm-up
(imports, the default run, umap's compilation; see :func:`ui.cache.start_warm_up`) starts with
the server instead of with the first visitor. :func:`launch` starts it for tests and benches.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO

from streamlit.web import cli

APP = Path(__file__).resolve().parent.parent / "app.py"


def _warm_up() -> None:
    from ui import cache

    # Cached calls outside a session warn that they have no script context; here that is the point.
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(
        logging.ERROR
    )
    cache.start_warm_up()


def main() -> None:
    """Runs ``streamlit run app.py`` with the remaining command-line options."""
    threading.Thread(target=_warm_up, name="start-warm-up", daemon=True).start()
    sys.argv = ["streamlit", "run", str(APP), *sys.argv[1:]]
    cli.main()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(
    port: int,
    env: dict[str, str] | None = None,
    log: IO[bytes] | None = None,
    timeout: float = 90,
    plain: bool = False,
) -> subprocess.Popen:
    """Starts the app in a child process on ``127.0.0.1:port`` and waits until it is healthy.

    For tests and benchmarks. ``env`` adds to this process's environment; output goes to
    ``log`` (default: discarded). ``plain``: the conventional ``streamlit run app.py`` instead
    of this module.

    Raises:
        RuntimeError: the server exited or did not answer ``/_stcore/health`` within ``timeout``.
    """
    entry = ["streamlit", "run", str(APP)] if plain else ["ui.serve"]
    command = [sys.executable, "-m", *entry, "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.headless", "true"]  # fmt: skip
    server = subprocess.Popen(
        command,
        cwd=APP.parent,
        env={**os.environ, **(env or {})},
        stdout=log or subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return server
        except OSError:
            time.sleep(0.25)
    server.terminate()
    server.wait(timeout=20)
    raise RuntimeError(f"The app did not become healthy on port {port} within {timeout:.0f} s.")


if __name__ == "__main__":
    main()
