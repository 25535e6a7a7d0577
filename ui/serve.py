"""Serves the app: ``python -m ui.serve [streamlit options]`` is ``streamlit run app.py`` with
``st.navigation`` routing from the very first request, and the warm-up already under way.

Streamlit treats an app with a ``pages/`` folder as an old-style multipage app until some
session has run ``st.navigation``; a fresh server's first visitor who opens ``/feature_maps``
directly would get that page without ``app.py`` (no wide layout, wrong menu). Setting the flag
before the server starts removes that window. The warm-up (imports, the default run, umap's
compilation; see :func:`ui.cache.start_warm_up`) starts with the server instead of with the
first visitor.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from streamlit.runtime.pages_manager import PagesManager
from streamlit.web import cli

APP = Path(__file__).resolve().parent.parent / "app.py"


def _warm_up() -> None:
    from ui import cache

    cache.start_warm_up()


def main() -> None:
    """Runs ``streamlit run app.py`` with the remaining command-line options."""
    PagesManager.uses_pages_directory = False
    threading.Thread(target=_warm_up, name="start-warm-up", daemon=True).start()
    sys.argv = ["streamlit", "run", str(APP), *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
