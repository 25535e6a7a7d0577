"""Serves the app: ``python -m ui.serve [streamlit options]`` is ``streamlit run app.py`` with
``st.navigation`` routing from the very first request.

Streamlit treats an app with a ``pages/`` folder as an old-style multipage app until some
session has run ``st.navigation``; a fresh server's first visitor who opens ``/feature_maps``
directly would get that page without ``app.py`` (no wide layout, wrong menu). Setting the flag
before the server starts removes that window.
"""

from __future__ import annotations

import sys
from pathlib import Path

from streamlit.runtime.pages_manager import PagesManager
from streamlit.web import cli

APP = Path(__file__).resolve().parent.parent / "app.py"


def main() -> None:
    """Runs ``streamlit run app.py`` with the remaining command-line options."""
    PagesManager.uses_pages_directory = False
    sys.argv = ["streamlit", "run", str(APP), *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
