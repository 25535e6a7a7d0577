"""The feature-maps page's views: the layer and channel in focus, then one function per tab.

Each view draws its widgets, asks :func:`ui.cache.feature_maps` for a registered analysis
(``core.feature_maps``) and draws the figure of :mod:`ui.figures.feature_maps`. Widget keys
are URL parameters (``fm_layer``, ``fm_channel``, ``fm_order``, ...): keep them, links use them.

What can go wrong: a layer or channel from a link the model does not have (a toast, then the
default), a layer without maps (a strip of units instead of a grid), an analysis that does not
apply to the model (its reason, shown), a computation stopped half-way (nothing kept).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from core.activations import LayerInfo
from core.analysis import REGISTRY, Inputs
from core.feature_maps import maps as fmaps
from core.feature_maps import pca_colour as pca
from core.feature_maps import top_examples as topk
from core.feature_maps import visualisation as fvis
from core.feature_maps import weights as fweights
from ui import cache, exports, state
from ui.figures import feature_maps as figs
from ui.figures import memo
from ui.figures.common import PLOTLY_CONFIG, image_figure

ORDER_LABELS = {"channel": "Index", "mean": "Mean", "max": "Peak"}
SUMMARY_LABELS = {"max": "Strongest channel", "mean": "Mean of channels"}
RANKING_LABELS = {"max": "Peak", "mean": "Mean"}
PARAMETERISATION_LABELS = {"fourier": "Fourier (1/f)", "pixel": "Pixels"}


@dataclass(frozen=True)
class Focus:
    """What every tab looks at.

    Attributes:
        run: the run's name.
        sample: every layer's output for the selected input.
        layer: the layer picked.
        channel: the channel (or unit) picked.
        spatial: the model's layers with maps ``[C, H, W]``, in forward order.
    """

    run: str
    sample: fmaps.SampleMaps
    layer: LayerInfo
    channel: int
    spatial: list[LayerInfo]


def shape_text(shape: tuple[int, ...]) -> str:
    """``(16, 32, 32)`` -> ``16×32×32``."""
    return "×".join(map(str, shape))


def _pick_channel(layer: str, count: int, label: str) -> int:
    """The channel (or unit) picker; an out-of-range choice falls back to 0 with a message."""
    what = f"{layer} has no {label.lower()} {{}}: showing {label.lower()} 0."
    state.check_url("fm_channel", range(count), what, "channel")
    try:
        fmaps.check_channel(count, int(st.session_state.get("fm_channel", 0)), layer)
    except ValueError as err:
        if st.session_state.get("fm_shown_layer") == layer:
            st.warning(f"{err} Showing {label.lower()} 0.")
        st.session_state["fm_channel"] = 0
    st.session_state["fm_shown_layer"] = layer
    return int(
        st.number_input(
            f"{label} (0–{count - 1})", 0, count - 1, 0, **state.scoped("fm_channel", 0)
        )
    )


def focus(selection: state.Selection) -> Focus:
    """Draws the layer and channel pickers over the selected input's maps (and a NaN warning)."""
    run = selection.run
    layers = {la.name: la for la in fmaps.map_layers(cache.layers(run))}
    state.check_url("fm_layer", layers, "This model has no layer “{}” with maps or units.", "layer")
    sample = cache.analysis(
        run, "feature_maps.sample_maps", selection.inputs, fmaps.SampleMapsOptions()
    )
    c_layer, c_channel = st.columns([3, 1], vertical_alignment="bottom")
    first = fmaps.default_layer(list(layers.values()))
    name = c_layer.selectbox(
        "Layer", list(layers), index=list(layers).index(first), **state.scoped("fm_layer", first)
    )
    info = layers[name]
    c_layer.caption(f"{info.type} · output {shape_text(info.output_shape)}")
    activation = sample.arrays[name]
    with c_channel:
        units = fmaps.unit_count(activation)
        channel = _pick_channel(name, units, "Channel" if info.spatial else "Unit")
    warning = fmaps.nan_warning(activation)
    if warning:
        st.warning(warning)
    spatial = [la for la in layers.values() if la.spatial]
    return Focus(run, sample, info, channel, spatial)


def _pick_tile() -> None:
    picked = figs.clicked_channel(st.session_state.get("fm_grid"))
    if picked is not None:
        st.session_state["fm_channel"] = picked


def _units(activation: np.ndarray, layer: str, channel: int) -> None:
    """A layer without maps: its units (or tokens) for this input instead of a grid."""
    st.info(
        f"**{layer}** has no spatial maps (its output is {shape_text(activation.shape)}), "
        "so there is no grid: here is its activation for this input instead. "
        "Pick a convolutional layer to see channel maps."
    )
    if activation.ndim == 1:
        title = f"{layer}: {len(activation)} units"
        st.plotly_chart(
            memo.figure(figs.unit_strip_figure, activation, channel, title), config=PLOTLY_CONFIG
        )
    else:
        st.plotly_chart(memo.figure(figs.token_figure, activation, layer), config=PLOTLY_CONFIG)


def _grid_page(activation: np.ndarray, layer: str, channel: int, order: str, where: Any) -> int:
    """The grid page picker (only for more than one page), turned to the selected channel."""
    count = len(activation)
    pages = fmaps.page_count(count)
    if pages == 1:
        return 0
    wanted = (layer, channel, order)
    if st.session_state.get("fm_page_for") != wanted:  # page to the selected channel
        st.session_state["fm_page_for"] = wanted
        ranks = fmaps.channel_order(activation, order)
        st.session_state["fm_page"] = fmaps.page_of_channel(channel, ranks)
    st.session_state["fm_page"] = min(st.session_state.get("fm_page", 0), pages - 1)
    per = fmaps.PER_PAGE
    return where.selectbox(
        "Channels shown",
        range(pages),
        **state.scoped("fm_page", 0),
        format_func=lambda p: f"{p * per + 1}–{min((p + 1) * per, count)} of {count}",
    )


def channel_maps(focus: Focus) -> None:
    """Every channel's map for the input as a grid, the picked one over the input."""
    layer, channel, image = focus.layer.name, focus.channel, focus.sample.image
    activation = focus.sample.arrays[layer]
    if activation.ndim != 3:
        _units(activation, layer, channel)
        return
    c_order, c_page, c_scale = st.columns([2, 1.2, 1.5], vertical_alignment="bottom")
    order = c_order.segmented_control(
        "Order channels by", fmaps.ORDERS, key="fm_order", default="channel", required=True,
        format_func=ORDER_LABELS.get, **state.VIEW,
    )  # fmt: skip
    page = _grid_page(activation, layer, channel, order, c_page)
    shared = c_scale.toggle(
        "One colour scale",
        key="fm_shared",
        **state.VIEW,
        help="Off: each map scaled to its own peak.",
    )
    grid = fmaps.channel_grid(activation, layer, order, page)
    left, right = st.columns([1, 2.6], gap="medium")
    with left:
        st.plotly_chart(memo.figure(image_figure, image, "Input", height=230), config=PLOTLY_CONFIG)
        heat = fmaps.channel_at_input(activation, channel, image.shape[1:])
        title = f"Channel {channel} over the input"
        overlay = memo.figure(figs.channel_overlay_figure, image, heat, title, height=230)
        st.plotly_chart(overlay, config=PLOTLY_CONFIG)
        st.caption(figs.overlay_key(heat))
        m1, m2 = st.columns(2)
        m1.metric("Mean", f"{activation[channel].mean():.3g}")
        m2.metric("Peak", f"{activation[channel].max():.3g}")
    with right:
        st.plotly_chart(
            memo.figure(figs.channel_grid_figure, grid, channel, shared),
            config=PLOTLY_CONFIG,
            key="fm_grid",
            on_select=_pick_tile,
            selection_mode="points",
        )
        st.caption(
            f"{len(grid.channels)} of {grid.total} channels, each a "
            f"{shape_text(activation.shape[1:])} map; the number in a corner is the channel, the "
            "red frame the selected one. " + figs.grid_key(grid, shared)
            + " Click a tile to select its channel."
        )  # fmt: skip
        d1, d2, _ = st.columns([1, 1, 2])
        stem = f"{focus.run}_{layer}_maps"
        d1.download_button(
            "CSV", lambda: exports.grid_csv(activation), f"{stem}.csv", "text/csv",
            key="fm_csv", icon=":material/download:", help="Every channel: channel,row,col,value.",
        )  # fmt: skip
        d2.download_button(
            "NPY", lambda: exports.npy_bytes(activation), f"{stem}.npy",
            "application/octet-stream", key="fm_npy", icon=":material/download:",
            help="The layer's maps for this input as a [C, H, W] array.",
        )  # fmt: skip


def depth(focus: Focus) -> None:
    """One map per layer for the input, first layer to last."""
    if not focus.spatial:
        st.info("This model has no layer with spatial maps, so there is no strip across depth.")
        return
    first = fmaps.default_depth_layers(focus.spatial)
    c1, c2 = st.columns([1, 3])
    summary = c1.segmented_control(
        "Summarise each layer by", fmaps.SUMMARIES, key="fm_depth_summary", default="max",
        required=True, format_func=SUMMARY_LABELS.get, **state.VIEW,
    )  # fmt: skip
    names = c2.multiselect(
        "Layers",
        [la.name for la in focus.spatial],
        default=first,
        **state.scoped("fm_depth_layers", first),
    )
    if not names:
        st.info("Pick at least one layer.")
        return
    order = {la.name: i for i, la in enumerate(focus.spatial)}
    strip = fmaps.depth_strip(focus.sample, sorted(names, key=order.get), summary)
    st.plotly_chart(memo.figure(figs.depth_strip_figure, strip), config=PLOTLY_CONFIG)
    st.caption(
        figs.depth_strip_key(strip) + " "
        "One map per layer for this input, from the first layer to the last. Resolution shrinks "
        "with depth while each position sees more of the image: early maps follow edges and "
        "colours, later ones respond to whole parts. "
        + ("Each tile is the channel with the highest mean activation." if summary == "max" else "")
    )


def filters(focus: Focus) -> None:
    """The first convolution's filters, else an MLP's first-layer weights, as images."""
    layers = cache.layers(focus.run)
    conv, linear = (
        REGISTRY["feature_maps.first_conv_filters"],
        REGISTRY["feature_maps.input_weights"],
    )
    usable = [a for a in (conv, linear) if a.compatible(layers)]
    if not usable:
        st.info(" ".join(a.compatible(layers).reason for a in (conv, linear)))
        return
    try:
        weights = cache.analysis(
            focus.run, usable[0].name, fmaps.SHAPE_INPUTS, fweights.WeightsOptions()
        )
    except ValueError as err:
        st.info(str(err))
        return
    k, _, h, w = weights.weights.shape
    if usable[0] is conv:
        st.subheader(f"First convolution ({weights.layer}): {k} filters of {h}×{w}")
        st.plotly_chart(memo.figure(figs.weights_figure, weights), config=PLOTLY_CONFIG)
        st.caption(
            figs.weights_key(weights) + " Trained filters look like oriented edges, spots and "
            "colour blobs; random ones look like noise."
        )
        return
    st.subheader(f"First fully connected layer ({weights.layer}): {k} units")
    st.plotly_chart(
        memo.figure(figs.weights_figure, weights, cols=16, what="unit"), config=PLOTLY_CONFIG
    )
    st.caption(
        "Each square is one unit's weights laid out as an input image: the pattern the unit "
        "is looking for. " + figs.weights_key(weights, "unit")
    )


def top_examples(focus: Focus) -> None:
    """The images that excite the channel most, with the receptive field of each peak."""
    run, layer, channel = focus.run, focus.layer.name, focus.channel
    c1, c2 = st.columns([2, 1])
    k = c1.slider("Examples", 4, 24, topk.EXAMPLES, step=4, key="fm_k", **state.VIEW)
    ranking = c2.segmented_control(
        "Rank by",
        topk.RANKINGS,
        key="fm_rank",
        **state.VIEW,
        default="max",
        required=True,
        format_func=RANKING_LABELS.get,
    )
    label = f"Ranking the validation split for {layer}"
    options = topk.ChannelStatsOptions(layer=layer)
    try:
        stats = cache.analysis(run, "feature_maps.channel_stats", topk.RANKED, options, label)
        top = topk.top_k(stats, channel, k, ranking)
    except ValueError as err:
        st.error(str(err))
        return
    picked = tuple(int(i) for i in top.indices)
    examples = cache.batch(run, dataclasses.replace(topk.RANKED, indices=picked))
    titles = [
        f"#{i} {examples.class_names[y]} · {s:.2g}"
        for i, y, s in zip(picked, examples.labels, top.scores, strict=True)
    ]
    rf = None
    if focus.layer.spatial:
        rf_options = topk.ReceptiveFieldOptions(layer)
        rf = cache.analysis(run, "feature_maps.receptive_field", fmaps.SHAPE_INPUTS, rf_options)
    boxes = rf.boxes(top.positions) if rf is not None else None
    st.plotly_chart(
        memo.figure(figs.examples_figure, examples.images, boxes, titles), config=PLOTLY_CONFIG
    )
    shown, n = len(picked), len(stats.maxima)
    if rf is None or boxes is None:
        st.caption(
            f"The {shown} of {n} validation samples with the highest value of unit {channel} "
            f"in {layer} (sample index, true class, value)."
        )
        return
    st.caption(
        f"The {shown} of {n} validation samples on which channel {channel} of {layer} fires "
        f"hardest (sample index, true class, {ranking} activation). The red box is the "
        f"receptive field of the strongest position: {rf.size[0]}×{rf.size[1]} input pixels"
        + (", the whole image." if rf.covers_image else ".")
    )
    st.markdown("**What the unit sees at its peak**")
    crops = topk.crops(examples.images, boxes)
    titles = [f"#{i}" for i in picked]
    st.plotly_chart(
        memo.figure(figs.examples_figure, crops, None, titles, cols=12), config=PLOTLY_CONFIG
    )
    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
    target = c1.selectbox("Open an example's feature maps", picked, key="fm_open")
    c2.button("Open", key="fm_open_go", on_click=state.open_sample, args=(target,))


def _vis_options(layer: str, channel: int) -> fvis.FeatureVisOptions:
    """The feature-visualisation widgets, as options (their defaults are the options')."""
    default = fvis.FeatureVisOptions()
    c1, c2, c3 = st.columns(3)
    steps = c1.slider("Steps", 32, 512, default.steps, step=32, key="fm_vis_steps", **state.VIEW)
    parameterisation = c2.segmented_control(
        "Parameterisation",
        fvis.PARAMETERISATIONS,
        key="fm_vis_param",
        **state.VIEW,
        default=default.parameterisation,
        required=True,
        format_func=PARAMETERISATION_LABELS.get,
    )
    decorrelate = c3.toggle(
        "Decorrelated colour", default.decorrelate, key="fm_vis_decor", **state.VIEW
    )
    with st.expander("Transformation robustness"):
        t1, t2, t3 = st.columns(3)
        jitter = t1.slider(
            "Jitter (pixels)", 0, 8, default.jitter, key="fm_vis_jitter", **state.VIEW
        )
        scale = t2.slider(
            "Zoom (±%)", 0, 20, round(100 * default.scale), key="fm_vis_scale", **state.VIEW
        )
        rotate = t3.slider(
            "Rotation (±°)", 0, 30, round(default.rotate), key="fm_vis_rotate", **state.VIEW
        )
    return dataclasses.replace(
        default, layer=layer, channel=channel, steps=steps, jitter=jitter, scale=scale / 100,
        rotate=float(rotate), parameterisation=parameterisation, decorrelate=decorrelate,
    )  # fmt: skip


def feature_vis(focus: Focus) -> None:
    """An input synthesised to excite the channel, on request."""
    run, layer, channel = focus.run, focus.layer.name, focus.channel
    options = _vis_options(layer, channel)
    key = (run, options)
    go = st.button(
        "Synthesise an input", type="primary", key="fm_vis_go", icon=":material/auto_awesome:"
    )
    if go:
        label = f"Optimising an input for channel {channel} of {layer}"
        try:  # draws its own progress bar (steps, time left); Stop interrupts it
            result = cache.analysis(
                run, "feature_maps.feature_vis", fvis.COLOUR_INPUTS, options, label
            )
            st.session_state["fm_vis"] = (key, result)
        except ValueError as err:
            st.error(str(err))
    stored = st.session_state.get("fm_vis")
    if stored is None or stored[0] != key:
        st.caption(
            f"Synthesises an input that drives channel {channel} of {layer} as high as it goes, "
            "by gradient ascent with the usual regularisers (a frequency-scaled parameterisation, "
            "decorrelated colour, random jitter, zoom and rotation at every step)."
        )
        return
    result = stored[1]
    left, right = st.columns([1, 2])
    title = f"{layer} · channel {channel}"
    left.plotly_chart(
        memo.figure(image_figure, result.image, title, height=300), config=PLOTLY_CONFIG
    )
    with right:
        m1, m2 = st.columns(2)
        m1.metric("Activation of a grey start", f"{result.start:.3g}")
        m2.metric("Activation of the result", f"{result.final:.3g}", f"{result.gain:+.3g}")
        st.plotly_chart(memo.figure(figs.objective_figure, result.objective), config=PLOTLY_CONFIG)
    st.caption(
        "Left: the synthesised input. Right: the optimised value at each step (on the randomly "
        "transformed input; for a ReLU layer, its input before the ReLU)."
    )


def pca_colour(focus: Focus) -> None:
    """PCA as colour: 16 validation images at the focused layer with one kept basis, and the
    selected image across layers, each layer with its own basis."""
    layers = cache.layers(focus.run)
    image = focus.sample.image
    size = (image.shape[1], image.shape[2])
    names = pca.position_layers(layers, size)
    if not names:
        st.info("This model has no layer with positions (conv maps or patch tokens) to colour.")
        return
    layer = focus.layer.name
    if layer not in names:
        layer = pca.default_pca_layer(layers, size)
        st.caption(f"{focus.layer.name} has no positions: showing {layer}.")
    threshold = st.slider(
        "Foreground threshold (first component, in its standard deviations)",
        -1.0, 2.0, 0.0, 0.25, **state.scoped("fm_pca_threshold", 0.0),
        help="Positions whose first principal component scores above this are foreground.",
    )  # fmt: skip
    inputs = Inputs(split="val", n=pca.FIT_N, seed=0)
    try:
        fitted = cache.analysis(
            focus.run, "feature_maps.pca_colour", inputs,
            pca.PcaColourOptions(layer, threshold), "Fitting the PCA colours",
        )  # fmt: skip
    except ValueError as err:
        st.warning(str(err))
        return
    explained = ", ".join(f"{share:.0%}" for share in fitted.basis.explained)
    st.caption(
        f"**{layer}**: one PCA fitted jointly over the positions of {len(fitted.images)} "
        "validation images (CLS and extra tokens dropped). Its first component separates "
        "object from background (black); three components of the foreground, fitted again, are "
        f"red, green and blue (they explain {explained} of its variance). The basis is kept, so "
        "the same colour means the same kind of part in every image (Oquab et al. 2023, DINOv2)."
    )
    n = pca.GRID_N
    st.plotly_chart(
        memo.figure(figs.pca_colour_grid_figure, fitted.images[:n], fitted.rgb[:n]),
        config=PLOTLY_CONFIG,
        key="fm_pca_grid",
    )
    st.markdown("**This image across layers**")
    first = pca.depth_pca_layers(layers, size)
    chosen = st.multiselect("Layers", names, default=first, **state.scoped("fm_pca_layers", first))
    order = {name: i for i, name in enumerate(names)}
    chosen = sorted(chosen, key=order.get)
    colours = []
    for name in chosen:
        basis = cache.analysis(
            focus.run, "feature_maps.pca_colour", inputs,
            pca.PcaColourOptions(name, threshold), f"Fitting the PCA colours of {name}",
        )  # fmt: skip
        colours.append(cache.pca_colour_image(focus.run, image, basis).rgb[0])
    if colours:
        st.plotly_chart(
            memo.figure(figs.pca_colour_depth_figure, image, colours, chosen),
            config=PLOTLY_CONFIG,
            key="fm_pca_depth",
        )
        st.caption("Each layer's colours come from its own basis, fitted as above.")


TABS = {
    "Channel maps": channel_maps,
    "Across depth": depth,
    "Learned filters": filters,
    "Top examples": top_examples,
    "Feature visualisation": feature_vis,
    "PCA as colour": pca_colour,
}
"""The page's tabs, in order: title -> view."""
