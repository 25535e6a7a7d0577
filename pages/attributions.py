"""Placeholder until its issue lands."""

import streamlit as st

st.title("attributions")
st.info("This view is being built.")
