"""The projections page's three views: a layer's map, the samples across depth, the report card.

Each view draws its widgets (keys are URL parameters: keep them), asks :mod:`ui.cache` for the
result (a progress bar and Stop while it computes) and draws :mod:`ui.figures.projections`.
Numbers a caption quotes come from core (result fields, :mod:`core.models.precompute`'s
defaults). What can go wrong: a stored selection of samples that the current sample count no
longer shows (an info box says so); a target that cannot be probed (``ValueError``, shown by
the page).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.activations import INPUT
from core.extract.store import list_stores, stores_root
from core.models import precompute as pre
from core.models.runs import LoadedRun
from core.projections.density import DENSITY_THRESHOLD, nearest_points
from core.projections.fits import METHODS
from core.projections.large import LARGE_METHODS
from core.projections.report_card import LABEL, LayerReport, default_layer
from ui import cache, exports, fits, state
from ui.figures import memo
from ui.figures import projections as figs
from ui.figures.common import PLOTLY_CONFIG, nearest_upscale

MAP_SIZES = (500, 1000, 2000, 5000, 10_000, 20_000, 50_000)
DEPTH_SIZES = (300, 500, 1000, 2000)
REPORT_SIZES = (500, 1000, 1500, 2000)
GALLERY_MAX = 32
"""The selection's gallery shows at most this many images."""
OUTPUTS = ("true label", "predicted label", "correct", "confidence", "split")


def colour_values(
    run: LoadedRun, choice: str, idx: np.ndarray, predicted: np.ndarray, probs: np.ndarray
) -> tuple[np.ndarray, list[str] | None]:
    """Codes and category names (``None``: continuous) for ``choice`` over samples ``idx``."""
    data, classes = run.dataset, list(run.dataset.info.class_names)
    if choice == "true label":
        return data.labels[idx], classes
    if choice == "predicted label":
        return predicted, classes
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


def _selected_positions(event: object, fig_data: tuple) -> list[int]:
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


def _show_selection(
    run: LoadedRun, chosen: np.ndarray, idx: np.ndarray, predicted: np.ndarray
) -> None:
    """The gallery and label histogram of the selected samples (dataset indices)."""
    data, classes = run.dataset, run.dataset.info.class_names
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
            memo.figure(figs.label_histogram, data.labels[idx[here]], predicted[here], classes),
            config=PLOTLY_CONFIG,
            key="proj_histogram",
        )
        accuracy = float((predicted[here] == data.labels[idx[here]]).mean())
        st.caption(f"Model accuracy on the selection: **{accuracy:.1%}**.")


def _map_selection(n: int, idx: np.ndarray) -> np.ndarray:
    """The selected samples (dataset indices), updated from the chart's last selection event."""
    picked = _selected_positions(
        st.session_state.get("proj_chart"), st.session_state.get("proj_fig_data", ())
    )
    signature = (n, tuple(sorted(picked)))
    if picked and signature != st.session_state.get("proj_last_event"):
        st.session_state["proj_selected"] = sorted({int(idx[p]) for p in picked if p < len(idx)})
    st.session_state["proj_last_event"] = signature
    return np.array(st.session_state.get("proj_selected", []), dtype=int)


def map_view(name: str, run: LoadedRun) -> None:
    """One layer's map, with selection, gallery and CSV download."""
    data, classes = run.dataset, run.dataset.info.class_names
    names = [INPUT, *cache.cls_layers(name)] + [layer.name for layer in cache.layers(name)]
    first = default_layer(fits.report_layers(name))
    c1, c2, c3 = st.columns([3, 2.2, 1.2])
    c4, c5, _ = st.columns([3, 2.2, 1.2])
    layer = c1.selectbox(
        "Layer", names, index=names.index(first), **state.scoped("proj_layer", first)
    )
    method = (
        c2.segmented_control("Method", METHODS, default="UMAP", key="proj_method", **state.VIEW)
        or "UMAP"
    )
    dims_choice = c3.segmented_control(
        "Dims", ("2D", "3D"), default="2D", key="proj_dims", **state.VIEW
    )
    dims = 3 if dims_choice == "3D" else 2
    n = state.count_slider(
        c4, "Samples", MAP_SIZES, len(data), pre.PROJECTION_N, "proj_n",
        help="Stratified by class over the whole dataset (train, val and test).",
    )  # fmt: skip
    factors = [f.name for f in data.info.factors]
    colour_by = c5.selectbox(
        "Colour by", [*OUTPUTS, *factors], **state.scoped("proj_colour", "true label")
    )

    idx = cache.projection_samples(name, n)
    preds = cache.sample_predictions(name, n)
    features = fits.feature_info(name, layer, n)  # widths only; stored when shipped
    colour, categories = colour_values(run, colour_by, idx, preds.predicted, preds.probs)
    hover = [
        f"sample {s} · {classes[t]}"
        + ("" if t == p else f" → predicted {classes[p]}")
        + f" · {c:.0%}"
        for s, t, p, c in zip(
            idx, data.labels[idx], preds.predicted, preds.probs.max(1), strict=True
        )
    ]
    chosen = _map_selection(n, idx)
    mask = np.isin(idx, chosen)

    note, slot = st.empty(), st.empty()
    if method != "PCA" and not fits.projection_ready(name, layer, n, method, dims):
        stand_in = fits.projection(name, layer, n, "PCA", dims)
        note.info(f"⏳ Showing a **PCA stand-in** while {method} runs; it is replaced when ready.")
        title = f"PCA stand-in · {layer}"
        slot.plotly_chart(
            memo.figure(
                figs.point_map, stand_in.coords, colour, categories, hover, mask, title, colour_by
            ),
            config=PLOTLY_CONFIG,
        )
    result = fits.projection(name, layer, n, method, dims)  # progress bar, Stop
    note.empty()
    title = f"{method} · {layer}"
    fig = memo.figure(
        figs.point_map, result.coords, colour, categories, hover, mask, title, colour_by
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
    select = (
        " · Box or lasso select points to see them." if dims == 2 else " · Selection works in 2D."
    )
    st.caption(
        f"**{layer}** · {width} · {n:,} samples stratified by class · {method} "
        f"in {result.seconds:.1f} s (seed {pre.SEED}, reproducible){select}"
    )

    def coordinates_csv() -> bytes:  # built when the button is pressed, not on every rerun
        factors = {
            f.name: np.array(f.categories)[data.factors[f.name][idx]] for f in data.info.factors
        }
        coords = {axis: result.coords[:, i] for i, axis in enumerate("xyz"[:dims])}
        return exports.frame_csv(
            pd.DataFrame(
                {
                    "sample": idx,
                    "label": [classes[i] for i in data.labels[idx]],
                    "predicted": [classes[i] for i in preds.predicted],
                    "confidence": preds.probs.max(1).round(4),
                    **factors,
                    **coords,
                    "selected": mask,
                }
            )
        )

    st.download_button(
        "⬇ Coordinates and labels (CSV)",
        coordinates_csv,
        file_name=f"{name}_{layer}_{method}_{dims}d.csv".replace("(", "").replace(")", ""),
        mime="text/csv",
        key="proj_csv",
    )
    if len(chosen):
        _show_selection(run, chosen, idx, preds.predicted)


def depth_view(name: str, run: LoadedRun) -> None:
    """The same samples at every layer of the ladder, aligned from layer to layer."""
    data = run.dataset
    ladder = tuple(fits.report_layers(name))
    c1, c2, c3 = st.columns([2, 2, 3])
    method = c1.segmented_control(
        "Method", ("PCA", "UMAP"), default="PCA", key="depth_method", **state.VIEW
    )
    method = method or "PCA"
    n = state.count_slider(c2, "Samples", DEPTH_SIZES, len(data), pre.DEPTH_N, "depth_n")
    factors = ["true label"] + [f.name for f in data.info.factors]
    colour_by = c3.selectbox("Colour by", factors, **state.scoped("depth_colour", "true label"))
    idx = cache.projection_samples(name, n)
    preds = cache.sample_predictions(name, n)
    depth = fits.depth_projection(name, ladder, n, method)  # progress bar, Stop
    colour, categories = colour_values(run, colour_by, idx, preds.predicted, preds.probs)
    st.plotly_chart(
        memo.figure(figs.depth_strip, depth.coords, depth.layers, colour, categories),
        config=PLOTLY_CONFIG,
        key="depth_chart",
    )
    st.caption(
        f"{n:,} samples, input to logits. Each map is rotated/reflected onto the previous one "
        "(Procrustes)"
        + (", and UMAP starts from it" if method == "UMAP" else "")
        + ", so points move only where the representation changes."
    )


def _report_table(trained: LayerReport, random: LayerReport) -> pd.DataFrame:
    """Every score of the trained and random-init reports, one row per layer, target, model."""
    return pd.DataFrame(
        [
            {
                "layer": layer,
                "target": t,
                "model": label,
                "linear probe": rep.probe[i, k].mean(),
                "± std": rep.probe[i, k].std(),
                "k-NN": rep.knn[i, k].mean(),
                "chance": rep.chance[k],
            }
            for label, rep in (("trained", trained), ("random init", random))
            for i, layer in enumerate(rep.layers)
            for k, t in enumerate(rep.targets)
        ]
    )


def report_view(name: str, run: LoadedRun) -> None:
    """The layer report card: probes vs depth (trained vs random), factors, CKA."""
    others = [r.name for r in cache.run_list() if r.name != name]
    targets = [LABEL] + [f.name for f in run.dataset.info.factors]
    c1, c2, c3 = st.columns([2, 2, 3])
    target = c1.selectbox("Probe for", targets, **state.scoped("card_target", LABEL))
    held_out = len(run.splits.val) + len(run.splits.test)
    n = state.count_slider(c2, "Held-out samples", REPORT_SIZES, held_out, pre.REPORT_N, "card_n")
    versus = c3.selectbox(
        "Compare layers (CKA) with",
        ["random init", *others],
        **state.scoped("card_versus", "random init"),
        help="Another run is fed this run's held-out samples (resized if needed).",
    )
    trained = fits.report(name, n)  # stored for the defaults; else a progress bar
    random = fits.report(name, n, "random")
    j = targets.index(target)
    chance = float(trained.chance[j])
    last, best = trained.probe[-1, j].mean(), trained.most_readable(j)
    m = st.columns(4)
    m[0].metric(f"{target} probe · input", f"{trained.probe[0, j].mean():.0%}")
    m[1].metric(
        f"{target} probe · last layer",
        f"{last:.0%}",
        f"{last - random.probe[-1, j].mean():+.0%} vs random init",
    )
    m[2].metric(
        "most readable at",
        trained.layers[best],
        f"{trained.probe[best, j].mean():.0%}",
        delta_color="off",
    )
    m[3].metric("chance", f"{chance:.0%}", help="Always predicting the most frequent class.")
    st.plotly_chart(
        memo.figure(figs.probe_vs_depth, 
            trained.layers, trained.probe[:, j], random.probe[:, j], chance, target,
            knn=trained.knn[:, j],
        ),
        config=PLOTLY_CONFIG,
        key="card_probe_chart",
    )  # fmt: skip
    st.caption(
        f"Logistic-regression probe on each layer ({n:,} held-out samples, layers wider than "
        f"{trained.max_dims} dims PCA-reduced first), mean ± std over {trained.n_splits} "
        "stratified splits. Grey: the same architecture with random weights — what the layer "
        "holds without any learning."
    )
    left, right = st.columns(2)
    for where, label, rep, key in (
        (left, "**What each layer holds** · trained", trained, "card_factors"),
        (right, "**Without learning** · random init", random, "card_factors_random"),
    ):
        where.markdown(f"{label}, linear probe")
        where.plotly_chart(
            memo.figure(
                figs.factor_heatmap, rep.layers, rep.targets, rep.probe.mean(2), rep.chance
            ),
            config=PLOTLY_CONFIG,
            key=key,
        )
    st.caption("Cell text: accuracy; colour: how far above chance (0 = chance, 100% = perfect).")
    left, right = st.columns(2)
    left.markdown("**Layer-to-layer similarity** (linear CKA)")
    left.plotly_chart(
        memo.figure(
            figs.cka_heatmap,
            fits.report_cka(name, n).matrix,
            trained.layers,
            trained.layers,
            name,
            name,
        ),
        config=PLOTLY_CONFIG,
        key="card_cka",
    )
    other = fits.report_cka(name, n, "random" if versus == "random init" else versus)
    right.markdown(f"**{name} vs {versus}** (linear CKA, same samples)")
    right.plotly_chart(
        memo.figure(figs.cka_heatmap, other.matrix, other.layers, other.other_layers, versus, name),
        config=PLOTLY_CONFIG,
        key="card_cka_versus",
    )
    with st.expander("All numbers"):
        table = _report_table(trained, random)
        st.dataframe(table, hide_index=True, height=300)
        st.download_button(
            "⬇ Report card (CSV)",
            lambda: exports.frame_csv(table),
            file_name=f"{name}_report_card.csv",
            key="card_csv",
        )


def _store_selection(chart_key: str, fig_data: tuple) -> list[int]:
    """Positions (``customdata``) of the chart's current selection."""
    return _selected_positions(st.session_state.get(chart_key), fig_data)


def store_view(name: str, run: LoadedRun) -> None:
    """An activation store's map: every point, as a density image above the threshold."""
    stores = [p.name for p in list_stores()]
    if not stores:
        st.info(
            f"No activation stores in `{stores_root()}` (set `LAYERSCOPE_STORES` to look "
            f"elsewhere). Extract one with `python -m core.extract {name} --data shapes "
            f"--n 100000 --layers <layer> --out {stores_root()}/<name>`."
        )
        return
    c1, c2, c3 = st.columns([2.2, 3, 1.6])
    chosen = c1.selectbox("Store", stores, key="store", **state.VIEW)
    store = cache.opened_store(chosen)
    layers = list(dict.fromkeys(s.name for s in store.layers))
    layer = c2.selectbox("Layer", layers, key="store_layer", **state.VIEW)
    if layer not in layers:
        layer = layers[0]
    method = (
        c3.segmented_control(
            "Method", LARGE_METHODS, default="UMAP", key="store_method", **state.VIEW
        )
        or "UMAP"
    )
    mtime = (store.path / "manifest.json").stat().st_mtime
    result = cache.store_projection(chosen, layer, method)
    labels = cache.store_labels(chosen, mtime)
    classes = store.class_names
    colours = [figs.hex_colour(c) for c in figs.category_colours(classes)]
    title = f"{method} · {layer} · {store.n:,} points"
    if store.n > DENSITY_THRESHOLD:
        dmap = cache.store_density(chosen, layer, method, tuple(colours), mtime)
        fig = memo.figure(figs.density_figure, dmap, classes, colours, title)
        drawn = (
            f"Density image of all {store.n:,} points (drawn on the server; box or lasso "
            "select a spot to see the images nearest to it)"
        )
    else:
        hover = [f"sample {i} · {classes[t]}" for i, t in enumerate(labels)]
        mask = np.zeros(store.n, bool)
        fig = memo.figure(
            figs.point_map, result.coords, labels, classes, hover, mask, title, "true label"
        )
        drawn = f"All {store.n:,} points (WebGL; box or lasso select)"
    st.plotly_chart(
        fig,
        config=PLOTLY_CONFIG,
        key="store_chart",
        on_select="rerun",
        selection_mode=("points", "box", "lasso"),
    )
    st.caption(f"{drawn} · {result.describe()} · seed 0, reproducible.")
    picked = _store_selection("store_chart", tuple(fig.data))
    if not picked:
        return
    if store.n > DENSITY_THRESHOLD:
        rows = nearest_points(result.coords, dmap.cell_xy[picked], GALLERY_MAX // len(picked) + 1)
    else:
        rows = np.array(picked, dtype=np.int64)
    rows = rows[:GALLERY_MAX]
    ids = store.read("ids", rows)
    st.subheader(f"Nearest points · {len(rows)} of {store.n:,}")
    dataset = cache.store_dataset(chosen, mtime)
    if dataset is None:
        st.info("This store's images were given in memory and cannot be shown.")
        return
    st.image(
        [nearest_upscale(dataset.images[i], 152) for i in ids],
        caption=[f"#{i} · {classes[dataset.labels[i]]}" for i in ids],
        width=76,
    )
