"""layerscope: the Streamlit entry point. Routes over ``pages/``; each page draws the sidebar."""

from __future__ import annotations

import streamlit as st

from ui import cache

st.set_page_config(page_title="layerscope", page_icon=":material/biotech:", layout="wide")
cache.start_warm_up()  # once per server process, in a daemon thread

PAGES = [
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
        "pages/attention.py", title="Attention", icon=":material/visibility:", url_path="attention"
    ),
    st.Page(
        "pages/attributions.py",
        title="Attributions",
        icon=":material/my_location:",
        url_path="attributions",
    ),
]

page = st.navigation(PAGES)
st.sidebar.markdown("### layerscope")
page.run()
