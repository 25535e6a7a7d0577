"""Features: a sparse autoencoder's dictionary of a layer, its health, and a page per feature.

Layout only: the views are :mod:`ui.views.dictionary`. Query parameters ``?fe_sae=<id>``,
``fe_feature=<int>`` and ``fe_tab=<tab>`` reopen the same SAE, feature and tab.
"""

from __future__ import annotations

import streamlit as st

from ui import state
from ui.views import dictionary as views

selection = state.require_selection()
st.title("Features")
st.caption(
    "Single channels often mix several concepts. A sparse autoencoder (SAE) rewrites a layer's "
    "activations as a sparse sum of many more directions, each meant to be one concept: train "
    "one on any layer, check its health, and open each feature's images, heatmaps and effects."
)
views.train_form(selection.run)
focus = views.pick_sae(selection)
if focus is None:
    st.stop()

tabs = st.tabs(list(views.VIEWS), key="fe_tab", on_change="rerun", bind="query-params")
for tab, view in zip(tabs, views.VIEWS.values(), strict=True):
    with tab:
        if tab.open:
            view(focus)
