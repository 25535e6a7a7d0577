"""layerscope: the Streamlit entry point. Routes over ``pages/`` and draws the shared sidebar."""

from __future__ import annotations

import streamlit as st

from ui import state

st.set_page_config(page_title="layerscope", page_icon="🔬", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/feature_maps.py", title="Feature maps", icon="🧩", url_path="feature_maps"),
    st.Page("pages/projections.py", title="Projections", icon="🌌", url_path="projections"),
    st.Page("pages/attention.py", title="Attention", icon="👁️", url_path="attention"),
    st.Page("pages/attributions.py", title="Attributions", icon="🎯", url_path="attributions"),
]

page = st.navigation(PAGES)
st.sidebar.markdown("### 🔬 layerscope")
st.session_state["selection"] = state.sidebar()
page.run()
