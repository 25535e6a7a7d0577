"""Serves the app: ``python -m ui.serve [streamlit options]`` is ``streamlit run app.py`` with
the warm-up already under way when the first visitor arrives.

Both commands serve the same app, deep links included (see :mod:`ui.navigation`). The warm-up
(imports, the default run, umap's compilation; see :func:`ui.cache.start_warm_up`) starts with
the server instead of with the first visitor. :func:`launch` starts it for tests and benches.

Why the warm-up ends with ``gc.freeze()``: Streamlit runs a full ``gc.collect(2)`` after every
script run (``runner.postScriptGC``). With torch, torchvision (which pulls in sympy and
dynamo), scikit-learn, umap and plotly imported, the heap holds ~500,000 objects and each full
collection takes 0.5-0.9 s holding the interpreter lock: every interaction of every session
paid it, one after another. Freezing the start-up heap (modules, loaded runs) moves it out of
the collector's sight; later garbage is still collected. The imports therefore happen before
the server listens (a few seconds, which the first visitor waited for anyway). What can go
wrong: objects alive at a freeze are never collected, so it runs only after the imports and
after the warm-up, when what is alive is long-lived.
"""

from __future__ import annotations

import gc
import importlib
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
VIEWS = tuple(f"ui.views.{p.stem}" for p in (APP.parent / "ui" / "views").glob("[!_]*.py"))


WARM = "layerscope: warm-up done"
"""What the server prints when its warm-up has ended (benches wait for it: see :func:`warmed`)."""


def _warm_up(started: threading.Thread, since: float) -> None:
    started.join()
    gc.freeze()  # the loaded runs
    print(f"{WARM} in {time.perf_counter() - since:.1f} s", flush=True)


def main() -> None:
    """Runs ``streamlit run app.py`` with the remaining command-line options, after importing
    what every page needs (then frozen, before any session exists) and starting the warm-up."""
    since = time.perf_counter()
    for view in VIEWS:
        importlib.import_module(view)
    from ui import cache

    gc.freeze()  # the imports: most of the heap
    # Cached calls outside a session warn that they have no script context; here that is the point.
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(
        logging.ERROR
    )
    started = cache.start_warm_up()
    threading.Thread(
        target=_warm_up, args=(started, since), name="freeze-after-warm-up", daemon=True
    ).start()
    sys.argv = ["streamlit", "run", str(APP), *sys.argv[1:]]
    cli.main()


def warmed(log: Path, timeout: float = 300) -> float | None:
    """Waits until the server logging to ``log`` says its warm-up ended; returns the seconds it
    took (``None``: not within ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if WARM in text:
            return float(text.split(WARM + " in ")[1].split(" ")[0])
        time.sleep(0.5)
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(
    port: int,
    env: dict[str, str] | None = None,
    log: IO[bytes] | None = None,
    timeout: float = 180,
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
    stop(server)
    raise RuntimeError(f"The app did not become healthy on port {port} within {timeout:.0f} s.")


def stop(server: subprocess.Popen, grace: float = 20) -> None:
    """Stops a server: asks it to end, and kills it when it has not within ``grace`` seconds
    (a loaded machine can take that long to unwind Streamlit's threads)."""
    server.terminate()
    try:
        server.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
