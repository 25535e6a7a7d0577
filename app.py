"""layerscope: the Streamlit entry point. Routes over ``pages/``; each page draws the sidebar.

The body is guarded by ``__name__ == "__main__"`` (true when Streamlit runs this file): the fit
worker process (:mod:`core.worker`) imports the parent's main module and must not run the app.
"""

from __future__ import annotations

import streamlit as st


def main() -> None:
    """Configures the page, starts the warm-up and runs the selected page."""
    from ui import cache  # here, not at the top: the worker imports this file and needs none of it

    st.set_page_config(page_title="layerscope", page_icon=":material/biotech:", layout="wide")
    cache.start_warm_up()  # once per server process, in a daemon thread
    pages = [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page(
            "pages/feature_maps.py",
            title="Feature maps",
            icon=":material/grid_view:",
            url_path="feature_maps",
        ),
        st.Page(
            "pages/projections.py",
            title="Projections",
            icon=":material/scatter_plot:",
            url_path="projections",
        ),
        st.Page(
            "pages/attention.py",
            title="Attention",
            icon=":material/visibility:",
            url_path="attention",
        ),
        st.Page(
            "pages/attributions.py",
            title="Attributions",
            icon=":material/my_location:",
            url_path="attributions",
        ),
    ]
    page = st.navigation(pages)
    st.sidebar.markdown("### layerscope")
    page.run()


if __name__ == "__main__":
    main()
