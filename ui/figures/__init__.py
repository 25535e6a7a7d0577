"""Plotly figures, one module per page family; no Streamlit."""
