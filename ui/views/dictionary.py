"""The features page's views: training an SAE, picking one, then one function per tab.

Every number comes from ``core.dictionary`` through :mod:`ui.cache` (``cache.analysis`` for the
registered analyses, with a progress bar and Stop). Widget keys are URL parameters (``fe_sae``,
``fe_feature``, ``fe_tab``, ``fe_search``, ``fe_factor``, the ``fe_train_*`` form): keep them,
links use them.

What can go wrong: an SAE named by a link that no longer exists (a toast, then the newest), a
training stopped half-way (nothing kept), an SAE trained on older weights of the run (a warning).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from core.analysis import Inputs, to_json
from core.dictionary import store
from core.dictionary.feature_page import SAEOptions, SteerOptions, decoder_map, nearest_channels
from core.dictionary.features import (
    HEALTH_INPUTS,
    LOG_BINS,
    FeatureStatsOptions,
    cofiring,
    health_summary,
    log_density,
    quantile_examples,
)
from core.dictionary.ground_truth import verdict
from core.dictionary.tokens import default_layer
from core.dictionary.train import ARCHITECTURES, TRAIN_INPUTS, TrainOptions, training_summary
from core.feature_maps import maps as fmaps
from core.feature_maps import top_examples as topk
from core.feature_maps import visualisation as fvis
from ui import cache, state
from ui.figures import dictionary as figs
from ui.figures import memo
from ui.figures.common import PLOTLY_CONFIG, image_figure
from ui.figures.feature_maps import examples_figure

ARCHITECTURE_LABELS = {"batchtopk": "BatchTopK", "topk": "TopK", "relu": "ReLU + L1"}
EFFECT_INPUTS = Inputs(split="val", n=256)
"""The images a feature's class effects are averaged over."""
STEER_FACTORS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class Focus:
    """What every tab looks at: the run, the input, the SAE and its weights."""

    run: str
    selection: state.Selection
    sae: store.SavedSAE
    params: Any

    @property
    def options(self) -> FeatureStatsOptions:
        return FeatureStatsOptions(self.run, self.sae.id)


def _stopped() -> None:
    st.session_state["fe_stopped"] = True


def train_form(run: str) -> None:
    """The form that trains a new SAE (progress, time left and a Stop button while it runs);
    open while the run has no SAE."""
    layers = [la for la in cache.layers(run) if len(la.output_shape) in (1, 2, 3)]
    names = [la.name for la in layers]
    first = default_layer(layers)
    defaults = TrainOptions()
    expanded = not store.list_saes(run)
    with st.expander("Train a new sparse autoencoder", expanded=expanded):
        c1, c2 = st.columns([2, 2])
        layer = c1.selectbox(
            "Layer", names, index=names.index(first), **state.scoped("fe_train_layer", first)
        )
        shape = next(la.output_shape for la in layers if la.name == layer)
        c1.caption(f"Output {'×'.join(map(str, shape))}")
        architecture = c2.segmented_control(
            "Sparsity",
            ARCHITECTURES,
            key="fe_train_arch",
            default=defaults.architecture,
            required=True,
            format_func=ARCHITECTURE_LABELS.get,
            **state.VIEW,
        )
        c3, c4, c5 = st.columns(3)
        k = c3.number_input(
            "k (active per token)",
            1,
            256,
            defaults.k,
            key="fe_train_k",
            disabled=architecture == "relu",
            **state.VIEW,
        )
        expansion = c4.select_slider(
            "Features per channel",
            (2, 4, 8, 16, 32),
            defaults.expansion,
            key="fe_train_x",
            **state.VIEW,
        )
        steps = c5.select_slider(
            "Steps",
            (100, 250, 500, 1000, 2000),
            defaults.steps,
            key="fe_train_steps",
            **state.VIEW,
        )
        st.caption(
            f"Trains on the tokens of the {len(cache.loaded_run(run).splits.train):,} training "
            f"images, {defaults.batch_tokens:,} tokens per step. BatchTopK keeps the k·batch "
            "largest activations of a batch (one threshold at inference); ReLU + L1 is the "
            "older recipe, kept for comparison."
        )
        go = st.button("Train", type="primary", key="fe_train_go", icon=":material/school:")
        if st.session_state.pop("fe_stopped", False):
            st.info("Training stopped: nothing was kept.")
        if not go:
            return
        options = dataclasses.replace(
            defaults,
            layer=layer,
            architecture=architecture,
            k=int(k),
            expansion=int(expansion),
            steps=int(steps),
        )
        st.button("Stop training", key="fe_train_stop", on_click=_stopped, icon=":material/stop:")
        started = time.perf_counter()
        try:
            params = cache.analysis(
                run, "dictionary.train", TRAIN_INPUTS, options, f"Training an SAE on {layer}"
            )
        except ValueError as err:
            st.error(str(err))
            return
        summary = training_summary(params, time.perf_counter() - started)
        extra = {"options": to_json(options), "summary": summary}
        st.session_state["fe_sae"] = store.save_sae(run, params, extra)
        st.rerun()


def _delete(run: str, sae: str) -> None:
    try:
        store.delete_sae(run, sae)
        st.session_state.pop("fe_sae", None)
    except ValueError as err:
        st.session_state["fe_delete_error"] = str(err)


def _label(s: store.SavedSAE) -> str:
    rule = ARCHITECTURE_LABELS.get(s.architecture, s.architecture)
    k = f" k={s.k}" if s.k else ""
    return f"{s.layer} · {rule}{k} · {s.d_sae} features · {s.created[:16].replace('T', ' ')}"


def _adopt_url_sae(by_id: dict[str, store.SavedSAE]) -> None:
    """Takes ``?fe_sae=`` when a link brings it (not what this session wrote); an SAE that is
    not there gets a toast, and the newest is shown.

    Not a bound widget: the URL must name the SAE even when it is the default (the newest),
    since the newest changes as SAEs are trained, and a bound widget drops its default.
    """
    wanted = st.query_params.get("fe_sae")
    if wanted and wanted != st.session_state.get("_fe_sae_written"):
        st.session_state["_fe_sae_written"] = wanted
        if wanted in by_id:
            st.session_state["fe_sae"] = wanted
        else:
            st.toast(f"This run has no SAE “{wanted}”: showing the newest.", icon="⚠️")
    if st.session_state.get("fe_sae") not in by_id:
        st.session_state["fe_sae"] = next(iter(by_id))


def pick_sae(selection: state.Selection) -> Focus | None:
    """The SAE picker (with Delete); ``None`` when the run has none yet."""
    run = selection.run
    saved = store.list_saes(run)
    if not saved:
        st.info("This run has no sparse autoencoder yet: train one above (about a minute).")
        return None
    by_id = {s.id: s for s in saved}
    _adopt_url_sae(by_id)
    c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
    sae_id = c1.selectbox(
        "SAE",
        list(by_id),
        format_func=lambda i: _label(by_id[i]),
        key="fe_sae",
        persist_state="session",
    )
    st.query_params["fe_sae"] = st.session_state["_fe_sae_written"] = sae_id
    sae = by_id[sae_id]
    if sae.deletable:
        c2.button(
            "Delete",
            key="fe_delete",
            on_click=_delete,
            args=(run, sae.id),
            icon=":material/delete:",
        )
    if error := st.session_state.pop("fe_delete_error", None):
        st.error(error)
    if sae.stale:
        st.warning("This SAE was trained on other weights of the run: its numbers may be off.")
    return Focus(run, selection, sae, cache.sae_params(run, sae.id))


def _stats(focus: Focus) -> Any:
    label = "Measuring the SAE on the validation split"
    return cache.analysis(focus.run, "dictionary.features", HEALTH_INPUTS, focus.options, label)


def health(focus: Focus) -> None:
    """Variance explained, L0, dead features, the density histogram and the spliced accuracy."""
    stats = _stats(focus)
    plain, spliced = stats.accuracy
    (p_lo, p_hi), (s_lo, s_hi) = stats.intervals
    m = st.columns(5)
    m[0].metric("Variance explained", f"{stats.fve:.1%}")
    m[1].metric("Mean L0", f"{stats.l0:.1f}", help="Active features per token.")
    dead = int((stats.fire_counts == 0).sum())
    m[2].metric("Dead features", f"{stats.dead_fraction:.1%}", help=f"{dead} never fire.")
    m[3].metric(
        "Accuracy", f"{plain:.1%}", help=f"[{p_lo:.1%}, {p_hi:.1%}], n = {stats.n_labelled}"
    )
    m[4].metric(
        "With the SAE spliced in",
        f"{spliced:.1%}",
        f"{(spliced - plain) * 100:+.1f} pts",
        delta_color="off",
        help=f"[{s_lo:.1%}, {s_hi:.1%}], n = {stats.n_labelled}",
    )
    st.caption(
        f"{health_summary(stats)} Measured on the {stats.n_labelled:,} validation images "
        f"({stats.n_tokens:,} tokens); intervals are 95 % Wilson: accuracy "
        f"[{p_lo:.1%}, {p_hi:.1%}], spliced [{s_lo:.1%}, {s_hi:.1%}]."
    )
    left, right = st.columns(2)
    with left:
        st.markdown("**How often each feature fires**")
        st.plotly_chart(
            memo.figure(figs.density_figure, log_density(stats.density)), config=PLOTLY_CONFIG
        )
    with right:
        st.markdown("**Training**")
        if len(focus.params.history):
            st.plotly_chart(
                memo.figure(figs.training_figure, focus.params.history), config=PLOTLY_CONFIG
            )
        else:
            st.caption("No training history (an SAE trained elsewhere).")


def _open_feature(feature: int) -> None:
    st.session_state["fe_feature"] = int(feature)
    st.session_state["fe_tab"] = "Feature"


def _pick_on_map() -> None:
    picked = figs.clicked_feature(st.session_state.get("fe_map"))
    if picked is not None:
        _open_feature(picked)


def _value_names(run: str, truth: Any) -> list[str]:
    info = cache.loaded_run(run).info.dataset
    names = {f.name: f.categories for f in info.factors} | {"class": info.class_names}
    return [f"{f}={names[f][c]}" for f, c in zip(truth.factors, truth.codes, strict=True)]


def feature_map(focus: Focus) -> None:
    """Every feature at its decoder direction's position, searchable by what it detects."""
    stats = _stats(focus)
    truth = cache.sae_ground_truth(focus.run, focus.sae.id)
    values = _value_names(focus.run, truth)
    best, auc = truth.most_associated()
    labels = [f"{values[b]} (AUC {a:.2f})" for b, a in zip(best, auc, strict=True)]
    search = (
        st.text_input(
            "Find features by the factor value or class they detect best",
            key="fe_search",
            placeholder="e.g. red, stripes, top-l, star",
            **state.VIEW,
        )
        .strip()
        .lower()
    )
    hits = np.array([search in label.lower() for label in labels]) if search else None
    highlight = hits if hits is not None else np.ones(len(labels), bool)
    selected = int(st.session_state.get("fe_feature", 0))
    figure = memo.figure(
        figs.feature_map_figure,
        decoder_map(focus.params),
        stats.density,
        labels,
        highlight,
        selected if selected < len(labels) else None,
    )
    st.plotly_chart(
        figure, config=PLOTLY_CONFIG, key="fe_map", on_select=_pick_on_map, selection_mode="points"
    )
    st.caption(
        f"{len(labels)} features placed by the first two principal components of their decoder "
        "directions; a point's size is how often the feature fires, its label the factor value "
        "or class its per-image peak detects best (AUC). Click a point to open its feature."
    )
    if hits is not None:
        found = np.flatnonzero(hits)
        st.markdown(f"**{len(found)} features** match “{search}”")
        order = found[np.argsort(-auc[found])][:20]
        table = pd.DataFrame(
            {
                "feature": order,
                "detects": [labels[i] for i in order],
                "fires on": [f"{stats.density[i]:.2%}" for i in order],
            }
        )
        st.dataframe(table, hide_index=True)
        if len(order):
            c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
            target = c1.selectbox("Open", [int(i) for i in order], key="fe_map_open")
            c2.button("Open feature", key="fe_map_go", on_click=_open_feature, args=(target,))


def _feature(focus: Focus) -> int:
    count = focus.params.d_sae
    state.check_url("fe_feature", range(count), "This SAE has no feature {}: showing 0.")
    if int(st.session_state.get("fe_feature", 0)) >= count:
        st.session_state["fe_feature"] = 0
    return int(
        st.number_input(
            f"Feature (0–{count - 1})", 0, count - 1, 0, **state.scoped("fe_feature", 0)
        )
    )


def _heats(maps: np.ndarray, feature: int, size: tuple[int, int]) -> np.ndarray:
    return np.stack([fmaps.channel_at_input(m, feature, size) for m in maps])


def feature(focus: Focus) -> None:
    """One feature: top and quantile images with heatmaps, histogram, effects, neighbours."""
    run, params = focus.run, focus.params
    index = _feature(focus)
    stats = _stats(focus)
    top = topk.top_k(stats.stats, index, topk.EXAMPLES)
    quantiles = quantile_examples(stats, index)
    if stats.fire_counts[index] == 0:
        st.warning(f"Feature {index} never fires on the validation split (a dead feature).")
    picked = [int(i) for i in top.indices] + [int(i) for _, q in quantiles for i in q]
    inputs = dataclasses.replace(HEALTH_INPUTS, indices=tuple(picked))
    examples = cache.batch(run, inputs)
    maps = cache.analysis(run, "dictionary.feature_maps", inputs, SAEOptions(run, focus.sae.id))
    size = tuple(examples.images.shape[2:])
    heats = _heats(maps.maps, index, size)
    names = examples.class_names
    n_top = len(top.indices)
    titles = [
        f"#{i} {names[y]} · {s:.2g}"
        for i, y, s in zip(picked, examples.labels, stats.stats.maxima[picked, index], strict=True)
    ]
    st.markdown(f"**Top {n_top} of {len(stats.stats.maxima):,} validation images**")
    st.plotly_chart(
        memo.figure(figs.heat_grid_figure, examples.images[:n_top], heats[:n_top], titles[:n_top]),
        config=PLOTLY_CONFIG,
    )
    st.caption(
        "Sample index, true class, the feature's peak; the heatmap is the feature's "
        "activation at each position, resized to the image."
    )
    if len(params.layer) and stats.stats.map_shape != (1, 1) and _spatial(run, params.layer):
        rf = cache.analysis(
            run,
            "feature_maps.receptive_field",
            fmaps.SHAPE_INPUTS,
            topk.ReceptiveFieldOptions(params.layer),
        )
        crops = topk.crops(examples.images[:n_top], rf.boxes(top.positions))
        st.markdown(f"**What the feature sees at its peak** ({rf.size[0]}×{rf.size[1]} pixels)")
        st.plotly_chart(
            memo.figure(examples_figure, crops, None, [f"#{i}" for i in picked[:n_top]], cols=12),
            config=PLOTLY_CONFIG,
        )
    start = n_top
    for q, idx in quantiles:
        if len(idx):
            part = slice(start, start + len(idx))
            st.markdown(f"**Near the {q:.0%} quantile of its peaks**")
            st.plotly_chart(
                memo.figure(
                    figs.heat_grid_figure, examples.images[part], heats[part], titles[part]
                ),
                config=PLOTLY_CONFIG,
            )
        start += len(idx)
    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
    target = c1.selectbox("Use an example as the page's sample", picked[:n_top], key="fe_open")
    c2.button("Use it", key="fe_open_go", on_click=state.open_sample, args=(target,))
    _feature_numbers(focus, index, stats)
    _steer(focus, index)
    _visualise(focus, index)


def _spatial(run: str, layer: str) -> bool:
    return any(la.name == layer and la.spatial for la in cache.layers(run))


def _feature_numbers(focus: Focus, index: int, stats: Any) -> None:
    run, params = focus.run, focus.params
    left, middle, right = st.columns([1.2, 1, 1])
    with left:
        st.markdown("**Activations**")
        figure = memo.figure(
            figs.activation_histogram, stats.histogram[index], LOG_BINS, stats.density[index]
        )
        st.plotly_chart(figure, config=PLOTLY_CONFIG)
        effects = cache.analysis(
            run,
            "dictionary.class_effects",
            EFFECT_INPUTS,
            SAEOptions(run, focus.sae.id),
            "Pushing every direction through the rest of the network",
        )
        st.markdown("**Classes its direction pushes up and down**")
        names = cache.batch(run, EFFECT_INPUTS).class_names
        st.plotly_chart(
            memo.figure(figs.effects_figure, effects.effects[index], names), config=PLOTLY_CONFIG
        )
        st.caption(
            f"Gradient of each class's logit (minus their mean), {EFFECT_INPUTS.n} "
            "validation images, for a shift of every token along the direction."
        )
    with middle:
        st.markdown("**Fires together with**")
        others, jaccard = cofiring(stats, index)
        st.dataframe(
            pd.DataFrame({"feature": others, "Jaccard": np.round(jaccard, 3)}), hide_index=True
        )
        c1, c2 = st.columns([1.3, 1], vertical_alignment="bottom")
        other = c1.selectbox("Open", [int(o) for o in others], key="fe_cofire_open")
        c2.button("Open", key="fe_cofire_go", on_click=_open_feature, args=(other,))
    with right:
        st.markdown("**Nearest channels of the layer**")
        channels, cosines = nearest_channels(params, index)
        st.dataframe(
            pd.DataFrame({"channel": channels, "cosine": np.round(cosines, 3)}), hide_index=True
        )
        query = focus.selection.query | {"fm_layer": params.layer, "fm_channel": str(channels[0])}
        st.page_link(
            "pages/feature_maps.py",
            label=f"Channel {channels[0]} in Feature maps",
            icon=":material/grid_view:",
            query_params=query,
        )
        st.caption("Cosine of the decoder direction with each channel's axis.")


def _steer(focus: Focus, index: int) -> None:
    st.markdown(f"**Ablate or amplify feature {index} on {focus.selection.described}**")
    factor = st.select_slider(
        "Multiply the feature's contribution by",
        STEER_FACTORS,
        0.0,
        key="fe_factor",
        format_func=lambda f: "0 (ablate)" if f == 0 else f"{f:g}",
        **state.VIEW,
    )
    options = SteerOptions(focus.run, focus.sae.id, index, float(factor))
    steered = cache.analysis(focus.run, "dictionary.steer", focus.selection.inputs, options)
    names = cache.loaded_run(focus.run).info.dataset.class_names
    label = "ablated" if factor == 0 else f"× {factor:g}"
    left, right = st.columns([1, 3])
    image = cache.input_image(focus.run, focus.selection.inputs)
    left.plotly_chart(
        memo.figure(image_figure, image, focus.selection.described, 200), config=PLOTLY_CONFIG
    )
    right.plotly_chart(
        memo.figure(figs.probabilities_figure, steered.before[0], steered.after[0], names, label),
        config=PLOTLY_CONFIG,
    )
    total = float(steered.activation[0])
    before, after = names[int(steered.before[0].argmax())], names[int(steered.after[0].argmax())]
    st.caption(
        f"The feature's summed activation on this image is {total:.3g}"
        + (
            " (it is silent here, so nothing changes: pick one of its top images above)."
            if total == 0
            else f"; the prediction goes from {before} to {after}."
        )
    )


def _visualise(focus: Focus, index: int) -> None:
    params = focus.params
    direction = params.W_enc[:, index] / max(float(np.linalg.norm(params.W_enc[:, index])), 1e-12)
    options = fvis.FeatureVisOptions(layer=params.layer, direction=tuple(map(float, direction)))
    key = (focus.run, focus.sae.id, index)
    if st.button(
        "Synthesise an input for this feature", key="fe_vis_go", icon=":material/auto_awesome:"
    ):
        label = f"Optimising an input for feature {index}"
        result = cache.analysis(
            focus.run, "feature_maps.feature_vis", fvis.COLOUR_INPUTS, options, label
        )
        st.session_state["fe_vis"] = (key, result)
    stored = st.session_state.get("fe_vis")
    if stored is None or stored[0] != key:
        st.caption(
            "Feature visualisation: gradient ascent on an input (the Feature maps page's "
            "recipe) along the feature's encoder direction, what makes it fire."
        )
        return
    result = stored[1]
    left, right = st.columns([1, 2])
    left.plotly_chart(
        memo.figure(image_figure, result.image, f"feature {index}", 260), config=PLOTLY_CONFIG
    )
    right.metric("Projection on the direction", f"{result.final:.3g}", f"{result.gain:+.3g}")


def this_image(focus: Focus) -> None:
    """Which features fire where on the page's sample."""
    maps = cache.analysis(
        focus.run,
        "dictionary.feature_maps",
        focus.selection.inputs,
        SAEOptions(focus.run, focus.sae.id),
    ).maps[0]
    image = cache.input_image(focus.run, focus.selection.inputs)
    peaks = maps.reshape(len(maps), -1).max(1)
    active = int((peaks > 0).sum())
    order = np.argsort(-peaks, kind="stable")[: min(12, max(active, 1))]
    size = tuple(image.shape[1:])
    heats = np.stack([fmaps.channel_at_input(maps, int(f), size) for f in order])
    titles = [f"feature {f} · {peaks[f]:.2g}" for f in order]
    st.plotly_chart(
        memo.figure(figs.heat_grid_figure, np.repeat(image[None], len(order), 0), heats, titles),
        config=PLOTLY_CONFIG,
    )
    st.caption(
        f"{active} of {len(maps)} features fire somewhere on {focus.selection.described}; "
        "the strongest, each over the image where it fires."
    )
    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
    target = c1.selectbox("Open a feature", [int(f) for f in order], key="fe_image_open")
    c2.button("Open", key="fe_image_go", on_click=_open_feature, args=(target,))


def ground_truth(focus: Focus) -> None:
    """Features against single channels as detectors of every factor value and class."""
    truth = cache.sae_ground_truth(focus.run, focus.sae.id)
    summary = truth.summary()
    m = st.columns(4)
    m[0].metric("Mean best AUC, features", f"{summary['feature_mean_best_auc']:.3f}")
    m[1].metric("Mean best AUC, channels", f"{summary['channel_mean_best_auc']:.3f}")
    m[2].metric("Values with a feature ≥ 0.95", f"{summary['feature_detectors']}")
    m[3].metric("Values with a channel ≥ 0.95", f"{summary['channel_detectors']}")
    st.caption(verdict(summary) + " Per-image peak as the score, validation split.")
    values = _value_names(focus.run, truth)
    f_best, f_auc = truth.best("feature")
    c_best, c_auc = truth.best("channel")
    st.plotly_chart(memo.figure(figs.auc_figure, f_auc, c_auc, values), config=PLOTLY_CONFIG)
    table = pd.DataFrame(
        {
            "factor": truth.factors,
            "value": [v.split("=", 1)[1] for v in values],
            "best feature": f_best,
            "feature AUC": np.round(f_auc, 3),
            "best channel": c_best,
            "channel AUC": np.round(c_auc, 3),
        }
    )
    st.dataframe(table, hide_index=True)
    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
    target = c1.selectbox("Open a detector", sorted({int(f) for f in f_best}), key="fe_gt_open")
    c2.button("Open", key="fe_gt_go", on_click=_open_feature, args=(target,))


VIEWS = {
    "Health": health,
    "Feature map": feature_map,
    "Feature": feature,
    "This image": this_image,
    "Ground truth": ground_truth,
}
"""The page's tabs, in order: title -> view."""
