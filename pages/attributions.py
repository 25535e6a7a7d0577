"""Attributions: which pixels and which inner units drive a prediction, and whether to trust it."""

from __future__ import annotations

import streamlit as st

from core.models.evaluation import CHANCE_WARNING
from ui import cache, state
from ui.views import attributions as views

selection = state.require_selection()
st.title("Attributions")
if cache.predictions(selection.run, "test").at_chance:
    st.warning(CHANCE_WARNING, icon=":material/warning:")
st.caption(
    f"Which pixels and which inner units make **{selection.run}** answer as it does on "
    f"{selection.described}, and whether those explanations survive a sanity check."
)

explained = views.explained(selection)
tab_maps, tab_units, tab_sanity, tab_faith = st.tabs(
    ["Maps", "Layer units", "Sanity check", "Faithfulness"], key="attr_tab", bind="query-params"
)
with tab_maps:
    views.maps(explained)
with tab_units:
    views.layer_units(explained)
with tab_sanity:
    views.sanity_check(explained)
with tab_faith:
    views.faithfulness(explained)
