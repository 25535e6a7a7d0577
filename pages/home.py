"""Home: the selected run at a glance."""

import streamlit as st

from ui import cache, state

selection = state.require_selection()
info = cache.loaded_run(selection.run).info
st.title(info.name)
st.metric("Test accuracy", f"{info.test_accuracy:.1%}")
