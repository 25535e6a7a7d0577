"""Streamlit glue: cached calls into ``core``, the shared sidebar, figure builders. No torch."""
