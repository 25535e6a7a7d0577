"""Training: how the selected run's layers formed, checkpoint by checkpoint.

Four views: the run over time (curves, the aligned projection, the first layer's filters), the
layer x checkpoint grids (CKA to the end, probe accuracy), the samples' learning and
forgetting, and overfitting. The checkpoint scrubber is the sidebar's (``?ckpt=``). Layout only:
each view lives in :mod:`ui.views.training`.
"""

from __future__ import annotations

import streamlit as st

from ui import state
from ui.views import training as views

selection = state.require_selection()
st.title("Training")
st.caption(
    "How the network formed: which layers settle first, when the first layer's filters appear, "
    "which samples are learned early, late, or forgotten, and where it memorises."
)
moment = views.scrubber(selection)
if moment is not None:
    first = next(iter(views.VIEWS))
    view = st.segmented_control(
        "View", list(views.VIEWS), default=first, key="train_view", **state.VIEW
    )
    try:
        views.VIEWS[view or first](moment)
    except ValueError as err:
        st.error(str(err))
