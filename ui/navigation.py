"""The app's pages and routing: what ``app.py`` runs, and what a page runs when it finds itself
started without ``app.py``.

Why: with a ``pages/`` folder beside ``app.py``, a fresh ``streamlit run app.py`` serves the
first visitor of a deep link (``/feature_maps``) the page script alone, in Streamlit's legacy
multipage mode, until some session has run ``st.navigation``. Every page therefore checks
:func:`inside_app` first (through :func:`ui.state.require_selection`); outside it runs
:func:`main`, which routes to the same page through ``st.navigation`` and so turns the legacy
mode off for every later visitor. Public Streamlit API only; the flag is per script thread.
"""

from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st

ICON = str(Path(__file__).resolve().parent.parent / "assets" / "icon.png")
PAGES = (
    ("pages/home.py", "Home", ":material/home:"),
    ("pages/feature_maps.py", "Feature maps", ":material/grid_view:"),
    ("pages/projections.py", "Projections", ":material/scatter_plot:"),
    ("pages/attention.py", "Attention", ":material/visibility:"),
    ("pages/attributions.py", "Attributions", ":material/my_location:"),
    ("pages/training.py", "Training", ":material/timeline:"),
    ("pages/audit.py", "Audit", ":material/fact_check:"),
    ("pages/features.py", "Features", ":material/hub:"),
)
"""Every page: script, title, icon. The first is the default (``/``); the others are served at
their file's stem (``/feature_maps``)."""

_running = threading.local()


def inside_app() -> bool:
    """Whether this script run came through :func:`main` (``st.navigation``)."""
    return getattr(_running, "active", False)


def current_page() -> st.Page:
    """The page this script run shows (only inside :func:`main`)."""
    return _running.page


def main() -> None:
    """Configures the page, starts the warm-up and runs the page the URL asks for.

    Navigation is hidden: the sidebar (:func:`ui.state.sidebar`) draws its own page links, which
    carry the selected run and sample in their query string.
    """
    from ui import cache

    icon = ICON if Path(ICON).is_file() else None
    st.set_page_config(page_title="layerscope", page_icon=icon, layout="wide")
    cache.start_warm_up()  # once per server process, in a daemon thread
    root = Path(__file__).resolve().parent.parent
    pages = [
        st.Page(
            str(root / path),
            title=title,
            icon=icon,
            default=i == 0,
            url_path=None if i == 0 else Path(path).stem,
        )
        for i, (path, title, icon) in enumerate(PAGES)
    ]
    page = st.navigation(pages, position="hidden")
    st.sidebar.markdown("### layerscope")
    _running.active, _running.page = True, page
    try:
        page.run()
    finally:
        _running.active = False
