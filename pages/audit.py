"""Audit: where the model fails, which concepts move its classes, and a report to hand over."""

from __future__ import annotations

import streamlit as st

from ui import state
from ui.views import audit as views

selection = state.require_selection()
st.title("Audit")
st.caption(
    f"Where **{selection.run}** fails (slices of every recorded factor), whether a concept such "
    "as a colour pushes its classes (TCAV against random directions), and a reproducible report "
    "of it all."
)
views.shortcut(selection)

tab_slices, tab_concepts, tab_report = st.tabs(
    ["Slices", "Concept test", "Report"], key="aud_tab", bind="query-params"
)
with tab_slices:
    views.slices(selection)
with tab_concepts:
    views.concepts(selection)
with tab_report:
    views.report(selection)
