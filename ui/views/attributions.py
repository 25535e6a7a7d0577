"""The attributions page's views: what to explain, then one function per tab.

Why it exists: the page is layout only; each view draws its widgets, asks ``ui.cache`` for a
registered ``attributions.*`` analysis and draws the figure. The expensive tabs (layer units,
sanity check, faithfulness) run on a button whose result stays shown while their parameters do
not change (:func:`requested`). What can go wrong: a method that does not apply to the model,
or a layer captum cannot attribute to, raises ``ValueError`` in ``core``; views show it as a
message and draw the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import streamlit as st

from core.activations import LayerInfo
from core.analysis import Inputs
from core.attributions.faithfulness import (
    AVERAGED_SAMPLES,
    MAX_AVERAGED_SAMPLES,
    FaithfulnessCurves,
    FaithfulnessOptions,
)
from core.attributions.layer_units import (
    LAYER_METHODS,
    UnitOptions,
    default_unit_layer,
    unit_layers,
)
from core.attributions.methods import (
    BASELINES,
    METHODS,
    SMOOTHING,
    SMOOTHING_NAMES,
    AttributionOptions,
    MethodOptions,
    cam_compatible,
    cam_layers,
    default_cam_layer,
    first_view_options,
    supported_methods,
)
from core.attributions.sanity import SANITY_METHODS, SanityOptions
from ui import cache, state
from ui.exports import grid_png, maps_csv, npy_bytes
from ui.figures import memo
from ui.figures.attributions import (
    correlation_figure,
    curves_figure,
    map_grid,
    sanity_grid,
    units_bar,
)
from ui.figures.common import PLOTLY_CONFIG, image_figure, overlay_figure

PREDICTED = "the predicted class"
DEFAULTS = MethodOptions()


@dataclass(frozen=True)
class Explained:
    """What every tab shares: the input, the class explained and the methods' parameters.

    Attributes:
        selection: the sidebar's selection.
        image: ``[C, H, W]`` the input.
        layers: the model's layers.
        params: the methods' parameters (target, baseline, steps, ...).
        methods: the methods picked for the maps.
        available: the methods that apply to the model.
        target_name: the class explained.
    """

    selection: state.Selection
    image: np.ndarray
    layers: list[LayerInfo]
    params: MethodOptions
    methods: tuple[str, ...]
    available: tuple[str, ...]
    target_name: str

    def options(self, kind: type, **extra: Any) -> Any:
        """Options of type ``kind`` with :attr:`params`' method parameters and ``extra``."""
        shared = {f.name: getattr(self.params, f.name) for f in fields(MethodOptions)}
        return kind(**shared, **extra)

    def run(
        self, analysis: str, options: Any, inputs: Inputs | None = None, label: str = ""
    ) -> Any:
        """The registered ``attributions.<analysis>`` on ``inputs`` (default: the selection)."""
        where = inputs or self.selection.inputs
        return cache.analysis(self.selection.run, f"attributions.{analysis}", where, options, label)


def requested(key: str, label: str, params: tuple) -> bool:
    """A one-click button whose result stays shown while ``params`` do not change."""
    if st.button(label, key=key, type="primary"):
        st.session_state[f"{key}_params"] = params
    return st.session_state.get(f"{key}_params") == params


def _method_parameters(side: int, layers: list[LayerInfo], target: int | None) -> MethodOptions:
    """The "Method parameters" expander's widgets, as options."""
    first = first_view_options(layers, side)
    window, stride = first.occlusion_window, first.occlusion_stride
    names = cam_layers(layers)
    cam_default = first.cam_layer or "(none)"
    with st.expander("Method parameters"):
        c1, c2, c3, c4 = st.columns(4)
        baseline = c1.selectbox(
            "Baseline",
            BASELINES,
            key="attr_baseline",
            **state.VIEW,
            help="The 'absent' input for IG, GradientSHAP, DeepLift and Occlusion.",
        )
        ig_steps = c1.slider(
            "IG steps", 4, 256, DEFAULTS.ig_steps, key="attr_ig_steps", **state.VIEW
        )
        window = c2.slider(
            "Occlusion window (px)", 1, side, window, **state.scoped("attr_occ_window", window)
        )
        stride = c2.slider(
            "Occlusion stride (px)", 1, side, stride, **state.scoped("attr_occ_stride", stride)
        )
        shap_samples = c3.slider(
            "GradientSHAP samples",
            2,
            64,
            DEFAULTS.shap_samples,
            key="attr_shap_samples",
            **state.VIEW,
        )
        shap_stdev = c3.slider(
            "GradientSHAP noise σ",
            0.0,
            0.5,
            DEFAULTS.shap_stdev,
            0.01,
            key="attr_shap_stdev",
            **state.VIEW,
        )
        cam_layer = c4.selectbox(
            "Grad-CAM layer",
            names or ["(none)"],
            index=names.index(cam_default) if cam_default in names else 0,
            **state.scoped("attr_cam_layer", cam_default),
            disabled=not names,
        )
        smooth_samples = c4.slider(
            "Smoothing samples",
            2,
            32,
            DEFAULTS.smooth_samples,
            key="attr_smooth_samples",
            **state.VIEW,
        )
        smooth_stdev = c4.slider(
            "Smoothing noise σ",
            0.01,
            0.5,
            DEFAULTS.smooth_stdev,
            0.01,
            key="attr_smooth_stdev",
            **state.VIEW,
        )
        batch = c1.select_slider(
            "Internal batch size",
            [4, 8, 16, 32, 64, 128],
            DEFAULTS.internal_batch_size,
            key="attr_batch",
            **state.VIEW,
            help="Inputs per pass inside IG, GradientSHAP, Occlusion and smoothing: bounds memory.",
        )
    return MethodOptions(
        target=target,
        baseline=baseline,
        ig_steps=ig_steps,
        internal_batch_size=batch,
        occlusion_window=window,
        occlusion_stride=stride,
        shap_samples=shap_samples,
        shap_stdev=shap_stdev,
        cam_layer=cam_layer if names else "",
        smooth_samples=smooth_samples,
        smooth_stdev=smooth_stdev,
    )


def explained(selection: state.Selection) -> Explained:
    """The input, its prediction, the class to explain, the methods and their parameters."""
    run = selection.run
    classes = cache.loaded_run(run).info.dataset.class_names
    probs = cache.input_probs(run, selection.inputs)
    predicted, label = int(probs.argmax()), cache.input_label(run, selection.inputs)
    image = cache.input_image(run, selection.inputs)
    layers = cache.layers(run)
    available = supported_methods(layers)
    left, right = st.columns([1, 3], vertical_alignment="top")
    left.plotly_chart(
        memo.figure(image_figure, image, height=200), config=PLOTLY_CONFIG, key="attr_input"
    )
    with right:
        verdict = (
            "your image, its class unknown"
            if label is None
            else "correct"
            if predicted == label
            else f"wrong, the true class is **{classes[label]}**"
        )
        st.markdown(f"Prediction: **{classes[predicted]}** ({probs[predicted]:.1%}) · {verdict}")
        choice = st.selectbox(
            "Class to explain",
            [PREDICTED, *classes],
            **state.scoped("attr_target", PREDICTED),
            help="Attributions explain the score of one class. By default, the predicted one.",
        )
        target = None if choice == PREDICTED else list(classes).index(choice)
        explained_class = predicted if target is None else target
        st.caption(
            f"Explaining **{classes[explained_class]}**, probability {probs[explained_class]:.1%}."
        )
        methods = st.multiselect(
            "Methods",
            available,
            default=available,
            format_func=METHODS.get,
            **state.scoped("attr_methods", list(available)),
        )
        cam = cam_compatible(layers)
        if not cam:
            st.caption(f"Grad-CAM and Guided Grad-CAM are not offered: {cam.reason}")
        smoothing = st.segmented_control(
            "Smoothing (NoiseTunnel)",
            SMOOTHING,
            default="none",
            format_func=lambda s: SMOOTHING_NAMES.get(s, s),
            key="attr_smoothing",
            **state.VIEW,
            help="Average each map over noisy copies of the input (Smilkov et al. 2017).",
        )
    params = _method_parameters(image.shape[-1], layers, target)
    params = replace(params, smoothing=smoothing or "none")
    return Explained(
        selection, image, layers, params, tuple(methods), available, classes[explained_class]
    )


def maps(ex: Explained) -> None:
    """Each picked method's map side by side, downloads, and Grad-CAM beside attention rollout."""
    if not ex.methods:
        st.info("Pick at least one method above.")
    results = {}
    for name in ex.methods:
        try:
            options = ex.options(AttributionOptions, methods=(name,))
            results[name] = ex.run("maps", options, label=f"Attributing with {METHODS[name]}")
        except ValueError as err:
            st.warning(f"**{METHODS[name]}**: {err}")
    if not results:
        return
    st.markdown(
        f"Evidence **for** (red) and **against** (blue) *{ex.target_name}*. Each map is scaled "
        "to its own 99th percentile, so colours compare where a method looks, not how much."
    )
    heats = {name: r.heats[0, 0] for name, r in results.items()}
    titles = []
    for name, result in results.items():
        detail = f"{result.seconds[0] * 1000:.0f} ms"
        if not np.isnan(result.deltas[0, 0]):
            detail += f" · δ = {result.deltas[0, 0]:.2g}"
        titles.append(f"<b>{METHODS[name]}</b><br><span style='font-size:11px'>{detail}</span>")
    st.plotly_chart(
        memo.figure(map_grid, ex.image, list(heats.values()), titles, columns=min(4, len(heats))),
        config=PLOTLY_CONFIG,
        key="attr_grid",
    )
    if "integrated_gradients" in results:
        st.caption(
            "Integrated Gradients' convergence delta δ = "
            f"{results['integrated_gradients'].deltas[0, 0]:.3g}: the sum of its map differs "
            "from f(input) − f(baseline) by this much (completeness; smaller is better, raise "
            "the steps to shrink it)."
        )
    _downloads(ex, heats)
    if cache.run_has_attention(ex.selection.run) and "grad_cam" in results:
        _beside_rollout(ex, heats["grad_cam"])


def _downloads(ex: Explained, heats: dict[str, np.ndarray]) -> None:
    d1, d2, d3 = st.columns(3)
    stem = f"{ex.selection.run}_{ex.selection.stem}_{ex.target_name}"
    d1.download_button(
        "Download the grid (PNG)",
        lambda: grid_png(ex.image, list(heats.values()), [METHODS[n] for n in heats]),
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


def _beside_rollout(ex: Explained, cam: np.ndarray) -> None:
    st.subheader("Grad-CAM beside attention rollout")
    attention = cache.analysis(ex.selection.run, "attention.maps", ex.selection.inputs)
    rolled = attention.layout.to_pixels(attention.rollout[0, -1, 0])
    layer = ex.params.cam_layer or default_cam_layer(ex.layers)
    g1, g2 = st.columns(2)
    g1.plotly_chart(
        memo.figure(overlay_figure, ex.image, cam, f"Grad-CAM at {layer}", height=320),
        config=PLOTLY_CONFIG,
        key="attr_vit_cam",
    )
    g2.plotly_chart(
        memo.figure(
            overlay_figure,
            ex.image,
            rolled,
            "Attention rollout (CLS, all layers)",
            "Viridis",
            None,
            height=320,
        ),
        config=PLOTLY_CONFIG,
        key="attr_vit_rollout",
    )
    st.caption(
        "Grad-CAM is class-specific (gradients of the target); rollout is not (it follows "
        "attention only). Where they agree, attention routes what the class score uses."
    )


def layer_units(ex: Explained) -> None:
    """Layer Conductance / Layer IG of one layer's units, with links to their feature maps."""
    names = unit_layers(ex.layers)
    default = default_unit_layer(ex.layers)
    layer = st.selectbox(
        "Layer", names, index=names.index(default), **state.scoped("attr_layer", default)
    )
    method = st.radio(
        "Method",
        list(LAYER_METHODS),
        format_func=LAYER_METHODS.get,
        horizontal=True,
        key="attr_layer_method",
        **state.VIEW,
    )
    options = ex.options(UnitOptions, layer=layer, method=method)
    if not requested("attr_units_run", "Attribute to this layer's units", (options,)):
        return
    try:
        units = ex.run("layer_units", options)
    except ValueError as err:
        st.error(str(err))
        return
    spatial = next(i for i in ex.layers if i.name == layer).spatial
    per_unit = units.per_unit[0]
    st.markdown(
        f"The {len(units.top)} units of `{layer}` with the largest share of *{ex.target_name}*'s "
        f"score (integration error δ = {units.deltas[0]:.2g})."
    )
    b1, b2 = st.columns([3, 1])
    b1.plotly_chart(
        memo.figure(units_bar, per_unit, units.top, "channel" if spatial else "unit"),
        config=PLOTLY_CONFIG,
        key="attr_units_bar",
    )
    if not spatial:
        b2.caption("This layer has no spatial maps, so there is no feature-map view.")
        return
    b2.markdown("**Open on Feature maps**")
    for unit in units.top:
        b2.page_link(
            "pages/feature_maps.py",
            label=f"channel {unit} ({per_unit[unit]:+.3g})",
            query_params={**ex.selection.query, "fm_layer": layer, "fm_channel": str(unit)},
        )


def sanity_check(ex: Explained) -> None:
    """Adebayo et al.'s cascading randomisation: maps, correlations and core's verdicts."""
    st.markdown(
        "Adebayo et al. 2018: randomise the model's weights from the top layer down and recompute "
        "each map. A method that explains the *model* must change; one whose maps stay "
        "rank-correlated with the original is explaining the *image*."
    )
    s1, s2 = st.columns([3, 1])
    default = [m for m in SANITY_METHODS if m in ex.available]
    methods = s1.multiselect(
        "Methods",
        ex.available,
        default=default,
        format_func=METHODS.get,
        **state.scoped("attr_sanity_methods", default),
    )
    steps = s2.slider("Steps", 2, 8, SanityOptions().steps, key="attr_sanity_steps", **state.VIEW)
    options = ex.options(SanityOptions, methods=tuple(methods), steps=steps)
    if not methods or not requested("attr_sanity_run", "Run the sanity check", (options,)):
        return
    check = ex.run("sanity_check", options, label="Randomising the model from the top down")
    labels = [METHODS[m] for m in check.methods]
    st.plotly_chart(
        memo.figure(sanity_grid, check.heats, labels, check.steps, verdicts=check.verdicts),
        config=PLOTLY_CONFIG,
        key="attr_sanity_grid",
    )
    st.plotly_chart(
        memo.figure(
            correlation_figure,
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


def faithfulness(ex: Explained) -> None:
    """Deletion and insertion curves of this input and of the first validation samples."""
    st.markdown(
        "Remove the pixels a map ranks highest first (to black) and watch the probability of the "
        "class fall: **deletion**. Add them back to a blurred image: **insertion**. "
        "A faithful map gives a low deletion area and a high insertion area."
    )
    f1, f2, f3 = st.columns([3, 1, 1])
    methods = f1.multiselect(
        "Methods",
        ex.available,
        default=ex.methods,
        format_func=METHODS.get,
        **state.scoped("attr_faith_methods", list(ex.methods)),
    )
    steps = f2.slider(
        "Points per curve", 8, 64, FaithfulnessOptions().steps, key="attr_faith_steps", **state.VIEW
    )
    n_val = len(cache.loaded_run(ex.selection.run).splits.val)
    n = f3.slider(
        "Validation samples to average",
        1,
        min(MAX_AVERAGED_SAMPLES, n_val),
        min(AVERAGED_SAMPLES, n_val),
        key="attr_faith_n",
        **state.VIEW,
    )
    options = ex.options(FaithfulnessOptions, steps=steps)
    params = (tuple(methods), n, options)
    if not methods or not requested("attr_faith_run", "Measure deletion and insertion", params):
        return
    this, average = {}, {}
    for name in methods:
        one = replace(options, method=name)
        label = f"Deleting and inserting pixels for {METHODS[name]}"
        try:
            single = ex.run("faithfulness", one, label=label)
            many = Inputs(indices=tuple(range(n)))
            average[name] = ex.run("faithfulness", replace(one, target=None), many, label)
            this[name] = single
        except ValueError as err:
            st.warning(f"**{METHODS[name]}**: {err}")
    if this:
        _curves(ex, this, average)


def _curves(
    ex: Explained, this: dict[str, FaithfulnessCurves], average: dict[str, FaithfulnessCurves]
) -> None:
    labels = {n: METHODS[n] for n in this}
    one, many = next(iter(this.values())), next(iter(average.values()))
    st.markdown(f"**This sample** (class *{ex.target_name}*)")
    st.plotly_chart(
        memo.figure(
            curves_figure,
            one.fractions,
            {labels[n]: c.deletion[0] for n, c in this.items()},
            {labels[n]: c.insertion[0] for n, c in this.items()},
            random=(one.random_deletion[0], one.random_insertion[0]),
            random_auc=(float(one.random_deletion_auc[0]), float(one.random_insertion_auc[0])),
        ),
        config=PLOTLY_CONFIG,
        key="attr_faith_this",
    )
    st.markdown(f"**Mean over the first {many.n} validation samples** (each its predicted class)")
    st.plotly_chart(
        memo.figure(
            curves_figure,
            one.fractions,
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
            "deletion AUC (this)": [round(float(c.deletion_auc[0]), 3) for c in this.values()],
            "insertion AUC (this)": [round(float(c.insertion_auc[0]), 3) for c in this.values()],
            f"deletion AUC (mean of {many.n})": [
                round(float(c.deletion_auc.mean()), 3) for c in average.values()
            ],
            f"insertion AUC (mean of {many.n})": [
                round(float(c.insertion_auc.mean()), 3) for c in average.values()
            ],
        },
        hide_index=True,
        key="attr_faith_table",
    )
    st.caption(many.baseline_text)
