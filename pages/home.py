"""Home: what layerscope is and where to start; the selected run at a glance; train a new run;
bring your own weights and images. Layout only: the views are in :mod:`ui.views.home`."""

from __future__ import annotations

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from ui import state
from ui.views import home


def home_tabs() -> tuple[DeltaGenerator, ...]:
    """The three tabs, bound to ``?home_tab=``; opens on Train while or after a job runs."""
    ss = st.session_state
    fresh = "home_tab" not in ss and ("training_job" in ss or "job" in st.query_params)
    if ss.pop("home_show_training", False) or fresh:
        ss["home_tab"] = home.TRAIN_TAB
    return tuple(st.tabs(home.TABS, key="home_tab", bind="query-params", on_change="rerun"))


selection = state.require_selection()
if notice := st.session_state.pop("home_notice", None):
    st.success(notice)
tab_overview, tab_train, tab_import = home_tabs()
with tab_overview:
    home.overview(selection)
with tab_train:
    home.train_form()
with tab_import:
    home.bring_your_own()
