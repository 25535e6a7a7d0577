"""Feature maps: what each layer of the selected run responds to.

Layout only: the views are :mod:`ui.views.feature_maps`. Query parameters
``?layer=<name>&channel=<int>`` (read once, e.g. from a link on another page) preselect the
layer and channel.
"""

from __future__ import annotations

import streamlit as st

from ui import state
from ui.views import feature_maps as views

selection = state.require_selection()
st.title("Feature maps")
st.caption(
    "What each layer responds to: every channel's map for one input, how the picture changes "
    "with depth, the learned filters, the validation images that excite a channel most, and an "
    "input synthesised to excite it."
)
focus = views.focus(selection)

tabs = st.tabs(list(views.TABS), key="fm_tab", on_change="rerun", bind="query-params")
for tab, view in zip(tabs, views.TABS.values(), strict=True):
    with tab:
        if tab.open:
            view(focus)
