"""Placeholder until its issue lands."""

import streamlit as st

st.title("feature_maps")
st.info("This view is being built.")
