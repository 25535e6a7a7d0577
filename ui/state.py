"""The sidebar every page shares: which run, which sample, kept in the URL.

The choice lives in ``st.session_state`` and in the query string (``?run=<name>&sample=<i>``),
so a link reopens the same view. An unknown run or sample in the URL falls back to the default
with a notice. ``sample`` indexes the run's validation split.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from core.runs import DEFAULT_RUN, RunError
from ui import cache


@dataclass(frozen=True)
class Selection:
    """What the sidebar selected: a run's name and a validation-sample index."""

    run: str
    sample: int


def _initial_run(names: list[str]) -> str:
    wanted = st.query_params.get("run")
    default = DEFAULT_RUN if DEFAULT_RUN in names else names[0]
    if wanted is not None and wanted not in names:
        st.toast(f"No run named “{wanted}”: showing {default}.", icon="⚠️")
        return default
    return wanted or default


def sidebar() -> Selection | None:
    """Draws the run and sample pickers and returns the selection (``None``: no runs at all)."""
    infos, broken = cache.run_scan()
    names = [r.name for r in infos]
    if broken:
        with st.sidebar.expander(f"{len(broken)} run folder(s) could not be read"):
            for err in broken:
                st.caption(str(err))
    if not names:
        st.sidebar.warning("No runs yet: train one on the Home page.")
        return None
    pending = st.session_state.pop("select_run_next", None)
    if pending in names:
        st.session_state["run"] = pending
        st.session_state["sample"] = 0
    if st.session_state.get("run") not in names:
        st.session_state["run"] = _initial_run(names)
    labels = {
        r.name: f"{r.name} · {r.arch} on {r.dataset.name}"
        + (f" · {r.test_accuracy:.1%}" if r.test_accuracy is not None else "")
        for r in infos
    }
    run = st.sidebar.selectbox("Run", names, key="run", format_func=labels.get)
    try:
        n_val = len(cache.loaded_run(run).splits.val)
    except RunError as err:
        st.error(f"{err} Pick another run in the sidebar.")
        st.stop()
    if "sample" not in st.session_state:
        try:
            wanted = int(st.query_params.get("sample", 0))
        except ValueError:
            wanted = -1
        if not 0 <= wanted < n_val:
            st.toast(f"Sample {st.query_params.get('sample')} does not exist: showing 0.", icon="⚠️")
            wanted = 0
        st.session_state["sample"] = wanted
    st.session_state["sample"] = min(st.session_state["sample"], n_val - 1)
    sample = st.sidebar.number_input(
        "Sample (validation split)", 0, n_val - 1, key="sample", help="Index into held-out data."
    )
    st.sidebar.image(
        cache.sample_image(run, sample).transpose(1, 2, 0), width=96, clamp=True, caption=None
    )
    st.query_params.update({"run": run, "sample": str(sample)})
    return Selection(run, int(sample))


def require_selection() -> Selection:
    """Draws the sidebar and returns its selection; stops the page when there is no run.

    Every page calls this first, so the sidebar is drawn by whichever script runs.
    """
    selection = sidebar()
    if selection is None:
        st.info("There is no run to show yet. Train one on the Home page.")
        st.stop()
    return selection


def select_run(name: str) -> None:
    """Selects run ``name`` in the sidebar and reruns the app."""
    st.session_state["select_run_next"] = name
    st.rerun()
