"""Projections: the same samples seen at every layer, and the layer report card.

Three views: a map of one layer (UMAP, PCA or t-SNE; box/lasso selection shows the samples),
the same samples across depth (aligned small multiples), and the report card (linear probes,
k-NN, random-init baseline, CKA). Everything is computed in ``core`` through ``ui.cache``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.activations import INPUT
from core.projections.fits import METHODS
from ui import cache, state
from ui.figures import projections as figs
from ui.figures.common import PLOTLY_CONFIG, nearest_upscale

VIEWS = ("Map", "Across depth", "Layer report card")
SAMPLE_SIZES = (500, 1000, 2000, 5000, 10_000, 20_000, 50_000)
GALLERY_MAX = 32

selection = state.require_selection()
run = cache.loaded_run(selection.run)
data, info = run.dataset, run.info
classes = data.info.class_names
cache.start_warm_up()

st.title("Projections")
st.caption(
    "The same samples, seen at every layer: how the network organises them, and how much of "
    "the label and of each known factor each layer holds."
)
view = (
    st.segmented_control("View", VIEWS, default=VIEWS[0], key="proj_view", **state.VIEW) or VIEWS[0]
)


def colour_options() -> list[str]:
    """What points can be coloured by: model outputs, then the dataset's factors."""
    return ["true label", "predicted label", "correct", "confidence", "split"] + [
        f.name for f in data.info.factors
    ]


def colour_values(
    choice: str, idx: np.ndarray, predicted: np.ndarray, probs: np.ndarray
) -> tuple[np.ndarray, list[str] | None]:
    """Codes and category names (``None``: continuous) for ``choice`` over samples ``idx``."""
    if choice == "true label":
        return data.labels[idx], list(classes)
    if choice == "predicted label":
        return predicted, list(classes)
    if choice == "correct":
        return (predicted == data.labels[idx]).astype(int), ["wrong", "correct"]
    if choice == "confidence":
        return probs.max(axis=1), None
    if choice == "split":
        split = np.zeros(len(data), int)
        split[run.splits.val], split[run.splits.test] = 1, 2
        return split[idx], ["train", "val", "test"]
    factor = next(f for f in data.info.factors if f.name == choice)
    return data.factors[choice][idx], list(factor.categories)


def selected_positions(event: object, fig_data: tuple) -> list[int]:
    """Sample positions of a plotly selection event (customdata, else trace + point index)."""
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    out = []
    for point in points:
        custom = point.get("customdata")
        if isinstance(custom, list):
            custom = custom[0] if custom else None
        if custom is None and point.get("curve_number", -1) < len(fig_data):
            custom = fig_data[point["curve_number"]].customdata[point["point_index"]]
        if custom is not None:
            out.append(int(custom))
    return out


def show_selection(chosen: np.ndarray, idx: np.ndarray, predicted: np.ndarray) -> None:
    """The gallery and label histogram of the selected samples (dataset indices)."""
    position = {int(s): p for p, s in enumerate(idx)}
    here = np.array([position[s] for s in chosen if s in position], dtype=int)
    head, clear = st.columns([5, 1])
    head.subheader(f"Selection · {len(chosen):,} samples")
    if clear.button("Clear selection", key="proj_clear", width="stretch"):
        st.session_state["proj_selected"] = []
        st.rerun()
    if not len(here):
        st.info("The selected samples are not among the samples shown: pick more samples.")
        return
    left, right = st.columns([3, 2])
    with left:
        shown = here[:GALLERY_MAX]
        st.image(
            [nearest_upscale(data.images[idx[p]], 152) for p in shown],
            caption=[
                f"{classes[data.labels[idx[p]]]}"
                + ("" if predicted[p] == data.labels[idx[p]] else f" → {classes[predicted[p]]}")
                for p in shown
            ],
            width=76,
        )
        if len(here) > GALLERY_MAX:
            st.caption(f"First {GALLERY_MAX} of {len(here):,} shown. Captions: true → predicted.")
    with right:
        st.plotly_chart(
            figs.label_histogram(data.labels[idx[here]], predicted[here], classes),
            config=PLOTLY_CONFIG,
            key="proj_histogram",
        )
        accuracy = float((predicted[here] == data.labels[idx[here]]).mean())
        st.caption(f"Model accuracy on the selection: **{accuracy:.1%}**.")


def map_view() -> None:
    """One layer's map, with selection, gallery and CSV download."""
    names = [INPUT, *cache.cls_layers(selection.run)] + [
        layer.name for layer in cache.layers(selection.run)
    ]
    ladder = cache.report_layers(selection.run)
    c1, c2, c3 = st.columns([3, 2.2, 1.2])
    c4, c5, _ = st.columns([3, 2.2, 1.2])
    layer = c1.selectbox(
        "Layer", names, index=names.index(ladder[-2]), **state.scoped("proj_layer", ladder[-2])
    )
    method = (
        c2.segmented_control("Method", METHODS, default="UMAP", key="proj_method", **state.VIEW)
        or "UMAP"
    )
    dims = (
        3
        if c3.segmented_control("Dims", ("2D", "3D"), default="2D", key="proj_dims", **state.VIEW)
        == "3D"
        else 2
    )
    n = state.count_slider(
        c4, "Samples", SAMPLE_SIZES, len(data), 2000, "proj_n",
        help="Stratified by class over the whole dataset (train, val and test).",
    )  # fmt: skip
    colour_by = c5.selectbox(
        "Colour by", colour_options(), **state.scoped("proj_colour", "true label")
    )

    idx = cache.projection_samples(selection.run, n)
    preds = cache.sample_predictions(selection.run, n)
    features = cache.feature_info(selection.run, layer, n)  # widths only; stored when shipped
    colour, categories = colour_values(colour_by, idx, preds.predicted, preds.probs)
    hover = [
        f"sample {s} · {classes[t]}"
        + ("" if t == p else f" → predicted {classes[p]}")
        + f" · {c:.0%}"
        for s, t, p, c in zip(
            idx, data.labels[idx], preds.predicted, preds.probs.max(1), strict=True
        )
    ]

    event = st.session_state.get("proj_chart")
    picked = selected_positions(event, st.session_state.get("proj_fig_data", ()))
    signature = (n, tuple(sorted(picked)))
    if picked and signature != st.session_state.get("proj_last_event"):
        st.session_state["proj_selected"] = sorted({int(idx[p]) for p in picked if p < len(idx)})
    st.session_state["proj_last_event"] = signature
    chosen = np.array(st.session_state.get("proj_selected", []), dtype=int)
    mask = np.isin(idx, chosen)

    note, slot = st.empty(), st.empty()
    if method != "PCA" and not cache.projection_ready(selection.run, layer, n, method, dims):
        stand_in = cache.projection(selection.run, layer, n, "PCA", dims)
        note.info(f"⏳ Showing a **PCA stand-in** while {method} runs; it is replaced when ready.")
        slot.plotly_chart(
            figs.point_map(
                stand_in.coords,
                colour,
                categories,
                hover,
                mask,
                f"PCA stand-in · {layer}",
                colour_by,
            ),
            config=PLOTLY_CONFIG,
        )
    result = cache.projection(selection.run, layer, n, method, dims)  # progress bar, Stop
    note.empty()
    fig = figs.point_map(
        result.coords, colour, categories, hover, mask, f"{method} · {layer}", colour_by
    )
    st.session_state["proj_fig_data"] = tuple(fig.data)
    slot.plotly_chart(
        fig,
        config=PLOTLY_CONFIG,
        key="proj_chart",
        on_select="rerun",
        selection_mode=("box", "lasso"),
    )

    width = f"{features.layer_dims:,} dims"
    if features.pca_dims is not None and method != "PCA":
        width += (
            f", reduced by PCA to {features.pca_dims} "
            f"({features.explained_variance:.0%} of the variance) before {method}"
        )
    st.caption(
        f"**{layer}** · {width} · {n:,} samples stratified by class · {method} "
        f"in {result.seconds:.1f} s (seed 0, reproducible)"
        + (
            " · Box or lasso select points to see them."
            if dims == 2
            else " · Selection works in 2D."
        )
    )
    table = pd.DataFrame(
        {
            "sample": idx,
            "label": [classes[i] for i in data.labels[idx]],
            "predicted": [classes[i] for i in preds.predicted],
            "confidence": preds.probs.max(1).round(4),
            **{
                f.name: np.array(f.categories)[data.factors[f.name][idx]] for f in data.info.factors
            },
            **{axis: result.coords[:, i] for i, axis in enumerate("xyz"[:dims])},
            "selected": mask,
        }
    )
    st.download_button(
        "⬇ Coordinates and labels (CSV)",
        table.to_csv(index=False).encode(),
        file_name=f"{selection.run}_{layer}_{method}_{dims}d.csv".replace("(", "").replace(")", ""),
        mime="text/csv",
        key="proj_csv",
    )
    if len(chosen):
        show_selection(chosen, idx, preds.predicted)


def depth_view() -> None:
    """The same samples at every layer of the ladder, aligned from layer to layer."""
    ladder = tuple(cache.report_layers(selection.run))
    c1, c2, c3 = st.columns([2, 2, 3])
    method = c1.segmented_control(
        "Method", ("PCA", "UMAP"), default="PCA", key="depth_method", **state.VIEW
    )
    method = method or "PCA"
    n = state.count_slider(c2, "Samples", (300, 500, 1000, 2000), len(data), 1000, "depth_n")
    factors = ["true label"] + [f.name for f in data.info.factors]
    colour_by = c3.selectbox("Colour by", factors, **state.scoped("depth_colour", "true label"))
    idx = cache.projection_samples(selection.run, n)
    preds = cache.sample_predictions(selection.run, n)
    depth = cache.depth_projection(selection.run, ladder, n, method)  # progress bar, Stop
    colour, categories = colour_values(colour_by, idx, preds.predicted, preds.probs)
    st.plotly_chart(
        figs.depth_strip(depth.coords, depth.layers, colour, categories),
        config=PLOTLY_CONFIG,
        key="depth_chart",
    )
    st.caption(
        f"{n:,} samples, input to logits. Each map is rotated/reflected onto the previous one "
        "(Procrustes)"
        + (", and UMAP starts from it" if method == "UMAP" else "")
        + ", so points move only where the representation changes."
    )


def report_view() -> None:
    """The layer report card: probes vs depth (trained vs random), factors, CKA."""
    others = [r.name for r in cache.run_list() if r.name != selection.run]
    targets = ["label"] + [f.name for f in data.info.factors]
    c1, c2, c3 = st.columns([2, 2, 3])
    target = c1.selectbox("Probe for", targets, **state.scoped("card_target", "label"))
    held_out = len(run.splits.val) + len(run.splits.test)
    n = state.count_slider(
        c2, "Held-out samples", (500, 1000, 1500, 2000), held_out, 1000, "card_n"
    )
    versus = c3.selectbox(
        "Compare layers (CKA) with",
        ["random init", *others],
        **state.scoped("card_versus", "random init"),
        help="Another run is fed this run's held-out samples (resized if needed).",
    )
    trained = cache.report(selection.run, n)  # stored for the defaults; else a progress bar
    random = cache.report(selection.run, n, "random")
    j = targets.index(target)
    chance = float(trained.chance[j])
    m = st.columns(4)
    m[0].metric(f"{target} probe · input", f"{trained.probe[0, j].mean():.0%}")
    m[1].metric(
        f"{target} probe · last layer",
        f"{trained.probe[-1, j].mean():.0%}",
        f"{trained.probe[-1, j].mean() - random.probe[-1, j].mean():+.0%} vs random init",
    )
    best = int(trained.probe[:, j].mean(1).argmax())
    m[2].metric(
        "most readable at",
        trained.layers[best],
        f"{trained.probe[best, j].mean():.0%}",
        delta_color="off",
    )
    m[3].metric("chance", f"{chance:.0%}", help="Always predicting the most frequent class.")
    st.plotly_chart(
        figs.probe_vs_depth(
            trained.layers,
            trained.probe[:, j],
            random.probe[:, j],
            chance,
            target,
            knn=trained.knn[:, j],
        ),
        config=PLOTLY_CONFIG,
        key="card_probe_chart",
    )
    st.caption(
        f"Logistic-regression probe on each layer ({n:,} held-out samples, layers wider than 64 "
        "dims PCA-reduced first), mean ± std over 3 stratified splits. Grey: the same "
        "architecture with random weights — what the layer holds without any learning."
    )
    left, right = st.columns(2)
    with left:
        st.markdown("**What each layer holds** · trained, linear probe")
        st.plotly_chart(
            figs.factor_heatmap(
                trained.layers, trained.targets, trained.probe.mean(2), trained.chance
            ),
            config=PLOTLY_CONFIG,
            key="card_factors",
        )
    with right:
        st.markdown("**Without learning** · random init, linear probe")
        st.plotly_chart(
            figs.factor_heatmap(random.layers, random.targets, random.probe.mean(2), random.chance),
            config=PLOTLY_CONFIG,
            key="card_factors_random",
        )
    st.caption("Cell text: accuracy; colour: how far above chance (0 = chance, 100% = perfect).")
    left, right = st.columns(2)
    with left:
        st.markdown("**Layer-to-layer similarity** (linear CKA)")
        st.plotly_chart(
            figs.cka_heatmap(
                cache.report_cka(selection.run, n).matrix,
                trained.layers,
                trained.layers,
                selection.run,
                selection.run,
            ),
            config=PLOTLY_CONFIG,
            key="card_cka",
        )
    with right:
        label = "random init" if versus == "random init" else versus
        other = cache.report_cka(selection.run, n, "random" if versus == "random init" else versus)
        st.markdown(f"**{selection.run} vs {label}** (linear CKA, same samples)")
        st.plotly_chart(
            figs.cka_heatmap(other.matrix, other.layers, other.other_layers, label, selection.run),
            config=PLOTLY_CONFIG,
            key="card_cka_versus",
        )
    rows = [
        {
            "layer": layer,
            "target": t,
            "model": name,
            "linear probe": p[i, k].mean(),
            "± std": p[i, k].std(),
            "k-NN": kn[i, k].mean(),
            "chance": rep.chance[k],
        }
        for name, rep in (("trained", trained), ("random init", random))
        for p, kn in [(rep.probe, rep.knn)]
        for i, layer in enumerate(rep.layers)
        for k, t in enumerate(rep.targets)
    ]
    with st.expander("All numbers"):
        table = pd.DataFrame(rows)
        st.dataframe(table, hide_index=True, height=300)
        st.download_button(
            "⬇ Report card (CSV)",
            table.to_csv(index=False).encode(),
            file_name=f"{selection.run}_report_card.csv",
            key="card_csv",
        )


try:
    {"Map": map_view, "Across depth": depth_view, "Layer report card": report_view}[view]()
except ValueError as err:
    st.error(str(err))
