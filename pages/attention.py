"""Attention: where each head of each layer looks, for one input and across the validation split."""

from __future__ import annotations

import streamlit as st

from ui import cache, state
from ui.views import attention as views

selection = state.require_selection()
st.title("Attention")

compatibility = cache.run_has_attention(selection.run)
if not compatibility:
    views.no_attention(selection.run, compatibility.reason)
    st.stop()

maps = views.sample_maps(selection)
image = cache.input_image(selection.run, selection.inputs)
views.summary(selection, maps)
pick = views.controls(maps)

st.subheader("Every head of every layer")
views.every_head(selection, maps, image, pick)

st.subheader(f"Layer {pick.layer}, head {pick.head} up close")
views.up_close(selection, maps, image, pick)

st.subheader("Attention rollout")
views.rollout(selection, maps, image, pick)

st.subheader("Heads across the validation split")
views.heads_across_split(selection)

st.subheader("Attention on the object, layer by layer")
views.object_attention(selection)

st.subheader("Token norms and high-norm outliers")
views.token_norms(selection, image)
