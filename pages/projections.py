"""Projections: the same samples seen at every layer, and the layer report card.

Three views: a map of one layer (UMAP, PCA or t-SNE; box/lasso selection shows the samples),
the same samples across depth (aligned small multiples), and the report card (linear probes,
k-NN, random-init baseline, CKA). Layout only: each view lives in :mod:`ui.views.projections`.
"""

from __future__ import annotations

import streamlit as st

from ui import cache, state
from ui.views import projections as views

VIEWS = {
    "Map": views.map_view,
    "Across depth": views.depth_view,
    "Layer report card": views.report_view,
    "Store": views.store_view,
}

selection = state.require_selection()
run = cache.loaded_run(selection.run)
cache.start_warm_up()

st.title("Projections")
st.caption(
    "The same samples, seen at every layer: how the network organises them, and how much of "
    "the label and of each known factor each layer holds."
)
first = next(iter(VIEWS))
view = st.segmented_control("View", list(VIEWS), default=first, key="proj_view", **state.VIEW)

try:
    VIEWS[view or first](selection.run, run)
except ValueError as err:
    st.error(str(err))
