"""Placeholder until its issue lands."""

import streamlit as st

st.title("projections")
st.info("This view is being built.")
