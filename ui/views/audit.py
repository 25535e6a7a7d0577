"""The audit page's views: the shortcut check, slices, a concept test, and the report files.

Why it exists: the page is layout only; each view draws its widgets, asks ``ui.cache`` for a
registered ``audit.*`` analysis (or the whole report) and draws :mod:`core.audit.figures`'s
figures. What can go wrong: a dataset without factors has no free concepts (the view says so);
a concept or class without images raises ``ValueError`` in ``core``, shown as a message.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.analysis import Inputs
from core.audit.concepts import CONCEPT_METHODS, ConceptOptions
from core.audit.figures import concept_chart, slice_chart
from ui import cache, state
from ui.figures import memo
from ui.figures.common import PLOTLY_CONFIG

SPLITS = {"test": "test split", "val": "validation split"}


def shortcut(selection: state.Selection) -> None:
    """Both test accuracies of a run trained with a shortcut (nothing for other runs)."""
    scored = cache.shortcut_accuracy(selection.run)
    if scored is None:
        return
    box = st.warning if scored.clear_drop else st.info
    box(scored.text(), icon=":material/rule:")


def slices(selection: state.Selection) -> None:
    """Accuracy per class and per value of every factor, worst first, with counts."""
    split = st.segmented_control(
        "Images", list(SPLITS), format_func=SPLITS.get, default="test", key="aud_split",
        **state.VIEW,
    ) or "test"  # fmt: skip
    result = cache.analysis(selection.run, "audit.slices", Inputs(split=split))
    info = cache.loaded_run(selection.run).info
    categories = {f.name: f.categories for f in info.dataset.factors}
    names = result.names(categories, info.dataset.class_names)
    st.plotly_chart(
        memo.figure(slice_chart, result, names), config=PLOTLY_CONFIG, key="aud_slice_chart"
    )
    frame = pd.DataFrame(
        {
            "slice": names,
            "n": result.count,
            "accuracy": result.accuracy.round(4),
            "95 % CI low": result.low.round(4),
            "95 % CI high": result.high.round(4),
            "mean confidence": result.confidence.round(4),
            "below overall": result.below_overall,
        }
    )
    st.dataframe(frame, hide_index=True, height=260, key="aud_slice_table")
    st.caption(
        f"n = {result.n:,} images of the {SPLITS[split]}; overall accuracy "
        f"{result.overall:.1%}. Red bars: the slice's whole 95 % Wilson interval lies below it."
    )


def concepts(selection: state.Selection) -> None:
    """TCAV score per layer of a factor-value concept for a class, against random sets."""
    info = cache.loaded_run(selection.run).info
    factors = {f.name: f.categories for f in info.dataset.factors}
    if not factors:
        st.info("This dataset records no factors, so no concept comes free with it.")
        return
    classes = info.dataset.class_names
    c1, c2, c3, c4 = st.columns(4)
    names = list(factors)
    factor = c1.selectbox("Factor", names, **state.scoped("aud_factor", names[0]))
    values = list(range(len(factors[factor])))
    value = c2.selectbox(
        "Concept: images whose factor is",
        values,
        format_func=lambda v: factors[factor][v],
        **state.scoped("aud_value", 0),
    )
    target = c3.selectbox(
        "Class", list(range(len(classes))), format_func=classes.__getitem__,
        **state.scoped("aud_target", 0),
    )  # fmt: skip
    method = c4.radio(
        "Method", list(CONCEPT_METHODS), format_func=CONCEPT_METHODS.get, key="aud_method",
        **state.VIEW,
    )  # fmt: skip
    options = ConceptOptions(factor=factor, value=value, target=target, method=method)
    label = f"Concept test {factor}={factors[factor][value]}"
    try:
        test = cache.analysis(
            selection.run, "audit.concept_test", Inputs(split="val"), options, label
        )
    except ValueError as err:
        st.warning(str(err))
        return
    concept = f"{factor}={factors[factor][value]}"
    st.plotly_chart(
        memo.figure(concept_chart, test, concept, classes[target]),
        config=PLOTLY_CONFIG,
        key="aud_tcav",
    )
    st.dataframe(
        pd.DataFrame(
            {
                "layer": test.layers,
                "TCAV (mean)": test.mean.round(3),
                "random (mean)": test.random_mean.round(3),
                "p": test.p_values,
                "verdict": test.verdicts(),
            }
        ),
        hide_index=True,
        key="aud_tcav_table",
    )
    st.caption(
        f"{options.n_random} concept-vs-random and {options.n_random} random-vs-random CAVs, "
        f"{test.n_concept} concept images, n = {test.n_inputs} images of {classes[target]} "
        f"(validation split), two-sided t-test at alpha {test.alpha:g}; seed {options.seed}."
    )


def report(selection: state.Selection) -> None:
    """A button making the same report.html and evidence.zip as ``python -m core.audit``."""
    st.markdown(
        "Everything above and more (the layer report card, attributions with their sanity "
        "checks, deletion/insertion over 100 validation images), as a self-contained HTML "
        f"page and a zip of every table: the same files as `python -m core.audit "
        f"{selection.run} --out DIR`."
    )
    make = st.button("Make the audit report", key="aud_make", type="primary")
    files = cache.audit_report(selection.run, make)
    if files is None:
        return
    page, evidence = files
    d1, d2 = st.columns(2)
    d1.download_button(
        "Download report.html", page, f"{selection.run}-report.html", "text/html",
        key="aud_html",
    )  # fmt: skip
    d2.download_button(
        "Download evidence.zip", evidence, f"{selection.run}-evidence.zip", "application/zip",
        key="aud_zip",
    )  # fmt: skip
    st.caption(f"report.html {len(page) / 2**20:.1f} MiB · evidence.zip {len(evidence):,} bytes")
