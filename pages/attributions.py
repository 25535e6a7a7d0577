"""Attributions: which pixels and which inner units drive a prediction, and whether to trust it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import streamlit as st

from core.analysis import Inputs
from core.attributions.layer_units import LAYER_METHODS
from core.attributions.methods import BASELINES, CAM_METHODS, METHODS, SMOOTHING, AttributionOptions
from core.models.evaluation import CHANCE_WARNING
from ui import cache, state
from ui.exports import grid_png, maps_csv, npy_bytes
from ui.figures.attributions import (
    correlation_figure,
    curves_figure,
    map_grid,
    sanity_grid,
    units_bar,
)
from ui.figures.common import PLOTLY_CONFIG, image_figure, overlay_figure

selection = state.require_selection()
run = cache.loaded_run(selection.run)
classes = run.info.dataset.class_names
inputs = selection.inputs
probs = cache.input_probs(selection.run, inputs)
predicted, label = int(probs.argmax()), cache.input_label(selection.run, inputs)
image = cache.input_image(selection.run, inputs)
side = image.shape[-1]
cam_layer_names, default_cam = cache.cam_layers(selection.run)
available = [m for m in METHODS if m not in CAM_METHODS or default_cam is not None]

PREDICTED = "the predicted class"
st.title("Attributions")
if cache.predictions(selection.run, "test").at_chance:
    st.warning(CHANCE_WARNING, icon=":material/warning:")
st.caption(
    f"Which pixels and which inner units make **{selection.run}** answer as it does on "
    f"{selection.described}, and whether those explanations survive a sanity check."
)

# --- what to explain ----------------------------------------------------------------------------
left, right = st.columns([1, 3], vertical_alignment="top")
with left:
    st.plotly_chart(image_figure(image, height=200), config=PLOTLY_CONFIG, key="attr_input")
with right:
    verdict = (
        "your image, its class unknown"
        if label is None
        else "correct"
        if predicted == label
        else f"wrong, the true class is **{classes[label]}**"
    )
    st.markdown(
        f"Prediction: **{classes[predicted]}** ({probs[predicted]:.1%}) · {verdict}",
    )
    choice = st.selectbox(
        "Class to explain",
        [PREDICTED, *classes],
        **state.scoped("attr_target", PREDICTED),
        help="Attributions explain the score of one class. By default, the predicted one.",
    )
    target = None if choice == PREDICTED else list(classes).index(choice)
    explained = predicted if target is None else target
    st.caption(f"Explaining **{classes[explained]}**, probability {probs[explained]:.1%}.")
    methods = st.multiselect(
        "Methods",
        available,
        default=available,
        format_func=METHODS.get,
        **state.scoped("attr_methods", available),
    )
    smoothing = (
        st.segmented_control(
            "Smoothing (NoiseTunnel)",
            SMOOTHING,
            default="none",
            format_func=lambda s: {"none": "none", "smoothgrad": "SmoothGrad"}.get(
                s, {"smoothgrad_sq": "SmoothGrad²", "vargrad": "VarGrad"}.get(s, s)
            ),
            key="attr_smoothing",
            **state.VIEW,
            help="Average each map over noisy copies of the input (Smilkov et al. 2017).",
        )
        or "none"
    )

with st.expander("Method parameters"):
    c1, c2, c3, c4 = st.columns(4)
    baseline = c1.selectbox(
        "Baseline",
        BASELINES,
        key="attr_baseline",
        **state.VIEW,
        help="The 'absent' input for IG, GradientSHAP, DeepLift and Occlusion.",
    )
    ig_steps = c1.slider("IG steps", 4, 256, 32, key="attr_ig_steps", **state.VIEW)
    default_window = max(2, side // 8)
    window = c2.slider(
        "Occlusion window (px)",
        1,
        side,
        default_window,
        **state.scoped("attr_occ_window", default_window),
    )
    stride = c2.slider(
        "Occlusion stride (px)",
        1,
        side,
        max(1, default_window // 2),
        **state.scoped("attr_occ_stride", max(1, default_window // 2)),
    )
    shap_samples = c3.slider(
        "GradientSHAP samples", 2, 64, 16, key="attr_shap_samples", **state.VIEW
    )
    shap_stdev = c3.slider(
        "GradientSHAP noise σ", 0.0, 0.5, 0.1, 0.01, key="attr_shap_stdev", **state.VIEW
    )
    cam_layer = c4.selectbox(
        "Grad-CAM layer",
        cam_layer_names or ["(none)"],
        index=cam_layer_names.index(default_cam) if default_cam in cam_layer_names else 0,
        **state.scoped(
            "attr_cam_layer",
            default_cam if default_cam in cam_layer_names else (cam_layer_names or ["(none)"])[0],
        ),
        disabled=not cam_layer_names,
    )
    smooth_samples = c4.slider(
        "Smoothing samples", 2, 32, 8, key="attr_smooth_samples", **state.VIEW
    )
    smooth_stdev = c4.slider(
        "Smoothing noise σ", 0.01, 0.5, 0.1, 0.01, key="attr_smooth_stdev", **state.VIEW
    )
    batch = c1.select_slider(
        "Internal batch size",
        [4, 8, 16, 32, 64, 128],
        16,
        key="attr_batch",
        **state.VIEW,
        help="Inputs per pass inside IG, GradientSHAP, Occlusion and smoothing: bounds memory.",
    )

options = AttributionOptions(
    target=target,
    baseline=baseline,
    ig_steps=ig_steps,
    internal_batch_size=batch,
    occlusion_window=window,
    occlusion_stride=stride,
    shap_samples=shap_samples,
    shap_stdev=shap_stdev,
    cam_layer=cam_layer if cam_layer_names else None,
    smoothing=smoothing,
    smooth_samples=smooth_samples,
    smooth_stdev=smooth_stdev,
)
target_name = classes[predicted if target is None else target]


def compute_maps(names: list[str]) -> tuple[dict, dict[str, str]]:
    """Each method's attribution (cached), with a progress bar; failures become messages."""
    results, failures = {}, {}
    bar = st.progress(0.0, text="Attributing…")
    for i, name in enumerate(names):
        bar.progress(i / max(1, len(names)), text=f"Attributing with {METHODS[name]}…")
        try:
            results[name] = cache.attribution(selection.run, inputs, name, options)
        except ValueError as err:
            failures[name] = str(err)
    bar.empty()
    return results, failures


def requested(key: str, label: str, params: tuple) -> bool:
    """A one-click button whose result stays shown while ``params`` do not change."""
    if st.button(label, key=key, type="primary"):
        st.session_state[f"{key}_params"] = params
    return st.session_state.get(f"{key}_params") == params


tab_maps, tab_units, tab_sanity, tab_faith = st.tabs(
    ["Maps", "Layer units", "Sanity check", "Faithfulness"], key="attr_tab", bind="query-params"
)

# --- maps ---------------------------------------------------------------------------------------
with tab_maps:
    if not methods:
        st.info("Pick at least one method above.")
    results, failures = compute_maps(methods)
    for name, message in failures.items():
        st.warning(f"**{METHODS[name]}**: {message}")
    if results:
        st.markdown(
            f"Evidence **for** (red) and **against** (blue) *{target_name}*. Each map is scaled "
            "to its own 99th percentile, so colours compare where a method looks, not how much."
        )
        titles = []
        for name, result in results.items():
            detail = f"{result.seconds * 1000:.0f} ms"
            if result.delta is not None:
                detail += f" · δ = {result.delta:.2g}"
            titles.append(f"<b>{METHODS[name]}</b><br><span style='font-size:11px'>{detail}</span>")
        heats = {name: r.heat for name, r in results.items()}
        columns = 4 if len(heats) > 3 else len(heats)
        st.plotly_chart(
            map_grid(image, list(heats.values()), titles, columns=columns),
            config=PLOTLY_CONFIG,
            key="attr_grid",
        )
        ig = results.get("integrated_gradients")
        if ig is not None:
            st.caption(
                f"Integrated Gradients' convergence delta δ = {ig.delta:.3g}: the sum of its map "
                "differs from f(input) − f(baseline) by this much (completeness; smaller is "
                "better, raise the steps to shrink it)."
            )
        d1, d2, d3 = st.columns(3)
        stem = f"{selection.run}_{selection.stem}_{target_name}"
        d1.download_button(
            "Download the grid (PNG)",
            lambda: grid_png(image, list(heats.values()), [METHODS[n] for n in heats]),
            file_name=f"{stem}_attributions.png",
            mime="image/png",
            key="attr_png",
        )
        d2.download_button(
            "Download the maps (NPY)",
            lambda: npy_bytes(np.stack(list(heats.values())).astype(np.float32)),
            file_name=f"{stem}_{'+'.join(heats)}.npy",
            key="attr_npy",
            help=f"Array [{len(heats)}, H, W], methods in file-name order, channels summed.",
        )
        d3.download_button(
            "Download the maps (CSV)",
            lambda: maps_csv(heats),
            file_name=f"{stem}_attributions.csv",
            mime="text/csv",
            key="attr_csv",
        )
    if cache.run_has_attention(selection.run) and "grad_cam" in results:
        st.subheader("Grad-CAM beside attention rollout")
        maps, rollout = cache.sample_attention(selection.run, inputs)
        rolled = maps.layout.to_pixels(rollout[-1, 0])
        g1, g2 = st.columns(2)
        g1.plotly_chart(
            overlay_figure(image, results["grad_cam"].heat, f"Grad-CAM at {cam_layer}", height=320),
            config=PLOTLY_CONFIG,
            key="attr_vit_cam",
        )
        g2.plotly_chart(
            overlay_figure(
                image, rolled, "Attention rollout (CLS, all layers)", "Viridis", None, height=320
            ),
            config=PLOTLY_CONFIG,
            key="attr_vit_rollout",
        )
        st.caption(
            "Grad-CAM is class-specific (gradients of the target); rollout is not (it follows "
            "attention only). Where they agree, attention routes what the class score uses."
        )

# --- layer units --------------------------------------------------------------------------------
with tab_units:
    layer_infos = [i for i in cache.layers(selection.run) if i.is_leaf or i.spatial]
    names = [i.name for i in layer_infos]
    default_unit_layer = default_cam if default_cam in names else names[max(0, len(names) - 2)]
    chosen = st.selectbox(
        "Layer",
        names,
        index=names.index(default_unit_layer),
        **state.scoped("attr_layer", default_unit_layer),
    )
    layer_method = st.radio(
        "Method",
        list(LAYER_METHODS),
        format_func=LAYER_METHODS.get,
        horizontal=True,
        key="attr_layer_method",
        **state.VIEW,
    )
    if requested(
        "attr_units_run", "Attribute to this layer's units", (chosen, layer_method, options)
    ):
        try:
            units = cache.unit_attribution(selection.run, inputs, chosen, layer_method, options)
        except ValueError as err:
            st.error(str(err))
        else:
            info = next(i for i in layer_infos if i.name == chosen)
            top = units.top_units(12)
            st.markdown(
                f"The {len(top)} units of `{chosen}` with the largest share of *{target_name}*'s "
                f"score (integration error δ = {units.delta:.2g})."
            )
            b1, b2 = st.columns([3, 1])
            b1.plotly_chart(
                units_bar(units.per_unit, top, "channel" if info.spatial else "unit"),
                config=PLOTLY_CONFIG,
                key="attr_units_bar",
            )
            if info.spatial:
                b2.markdown("**Open on Feature maps**")
                for unit in top:
                    b2.page_link(
                        "pages/feature_maps.py",
                        label=f"channel {unit} ({units.per_unit[unit]:+.3g})",
                        query_params={
                            **selection.query,
                            "fm_layer": chosen,
                            "fm_channel": str(unit),
                        },
                    )
            else:
                b2.caption("This layer has no spatial maps, so there is no feature-map view.")

# --- sanity check -------------------------------------------------------------------------------
with tab_sanity:
    st.markdown(
        "Adebayo et al. 2018: randomise the model's weights from the top layer down and recompute "
        "each map. A method that explains the *model* must change; one whose maps stay "
        "rank-correlated with the original is explaining the *image*."
    )
    s1, s2 = st.columns([3, 1])
    sanity_default = [
        m
        for m in ("saliency", "integrated_gradients", "guided_backprop", "grad_cam")
        if m in available
    ]
    sanity_methods = s1.multiselect(
        "Methods",
        available,
        default=sanity_default,
        format_func=METHODS.get,
        **state.scoped("attr_sanity_methods", sanity_default),
    )
    steps = s2.slider("Steps", 2, 8, 5, key="attr_sanity_steps", **state.VIEW)
    params = (tuple(sanity_methods), steps, options)
    if sanity_methods and requested("attr_sanity_run", "Run the sanity check", params):
        check = cache.sanity_check(selection.run, inputs, tuple(sanity_methods), options, steps)
        labels = [METHODS[m] for m in check.methods]
        st.plotly_chart(
            sanity_grid(check.heats, labels, check.steps, verdicts=check.verdicts),
            config=PLOTLY_CONFIG,
            key="attr_sanity_grid",
        )
        st.plotly_chart(
            correlation_figure(
                check.spearman_abs,
                labels,
                check.steps,
                threshold=check.threshold,
                verdicts=check.verdicts,
                statistic=check.statistic,
            ),
            config=PLOTLY_CONFIG,
            key="attr_sanity_corr",
        )
        st.dataframe(
            {
                "method": labels,
                "ρ(|map|) after full randomisation": np.round(check.final_similarity, 3),
                "verdict": list(check.verdicts),
            },
            hide_index=True,
            key="attr_sanity_table",
        )
        for m in check.methods:
            st.caption(check.verdict_text(m))
        st.caption(check.rule_text)

# --- faithfulness -------------------------------------------------------------------------------
with tab_faith:
    st.markdown(
        "Remove the pixels a map ranks highest first (to black) and watch the probability of the "
        "class fall: **deletion**. Add them back to a blurred image: **insertion**. "
        "A faithful map gives a low deletion area and a high insertion area."
    )
    f1, f2, f3 = st.columns([3, 1, 1])
    faith_methods = f1.multiselect(
        "Methods",
        available,
        default=methods,
        format_func=METHODS.get,
        **state.scoped("attr_faith_methods", methods),
    )
    curve_steps = f2.slider("Points per curve", 8, 64, 24, key="attr_faith_steps", **state.VIEW)
    n_val = len(run.splits.val)
    n_avg = f3.slider(
        "Validation samples to average",
        1,
        min(64, n_val),
        min(8, n_val),
        key="attr_faith_n",
        **state.VIEW,
    )
    params = (tuple(faith_methods), curve_steps, n_avg, options)
    if faith_methods and requested("attr_faith_run", "Measure deletion and insertion", params):
        bar = st.progress(0.0, text="Measuring…")
        this, average = {}, {}
        for i, name in enumerate(faith_methods):
            bar.progress(
                i / len(faith_methods), text=f"Deleting and inserting pixels for {METHODS[name]}…"
            )
            try:
                single = cache.faithfulness(selection.run, inputs, name, options, curve_steps)
                mean = cache.faithfulness(
                    selection.run,
                    Inputs(indices=tuple(range(n_avg))),
                    name,
                    replace(options, target=None),
                    curve_steps,
                )
                this[name], average[name] = single, mean
            except ValueError as err:
                st.warning(f"**{METHODS[name]}**: {err}")
        bar.empty()
        if this:
            labels = {n: METHODS[n] for n in this}
            one = next(iter(this.values()))
            fractions = one.fractions
            st.markdown(f"**This sample** (class *{target_name}*)")
            st.plotly_chart(
                curves_figure(
                    fractions,
                    {labels[n]: c.deletion[0] for n, c in this.items()},
                    {labels[n]: c.insertion[0] for n, c in this.items()},
                    random=(one.random_deletion[0], one.random_insertion[0]),
                    random_auc=(
                        float(one.random_deletion_auc[0]),
                        float(one.random_insertion_auc[0]),
                    ),
                ),
                config=PLOTLY_CONFIG,
                key="attr_faith_this",
            )
            many = next(iter(average.values()))
            st.markdown(
                f"**Mean over the first {many.n} validation samples** (each its predicted class)"
            )
            st.plotly_chart(
                curves_figure(
                    fractions,
                    {labels[n]: c.deletion.mean(0) for n, c in average.items()},
                    {labels[n]: c.insertion.mean(0) for n, c in average.items()},
                    random=(many.random_deletion.mean(0), many.random_insertion.mean(0)),
                    random_auc=(
                        float(many.random_deletion_auc.mean()),
                        float(many.random_insertion_auc.mean()),
                    ),
                ),
                config=PLOTLY_CONFIG,
                key="attr_faith_mean",
            )
            st.dataframe(
                {
                    "method": list(labels.values()),
                    "deletion AUC (this)": [
                        round(float(c.deletion_auc[0]), 3) for c in this.values()
                    ],
                    "insertion AUC (this)": [
                        round(float(c.insertion_auc[0]), 3) for c in this.values()
                    ],
                    f"deletion AUC (mean of {n_avg})": [
                        round(float(c.deletion_auc.mean()), 3) for c in average.values()
                    ],
                    f"insertion AUC (mean of {n_avg})": [
                        round(float(c.insertion_auc.mean()), 3) for c in average.values()
                    ],
                },
                hide_index=True,
                key="attr_faith_table",
            )
            st.caption(many.baseline_text)
