"""Placeholder until its issue lands."""

import streamlit as st

st.title("attention")
st.info("This view is being built.")
