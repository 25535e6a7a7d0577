"""Feature maps: what each layer of the selected run responds to.

Query parameters ``?layer=<name>&channel=<int>`` (read once, e.g. from a link on another page)
preselect the layer and channel.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.activations import LayerInfo
from core.feature_maps import maps as fmaps
from core.feature_maps import top_examples as topk
from core.feature_maps.visualisation import PARAMETERISATIONS, FeatureVisConfig
from ui import cache, exports, state
from ui.exports import npy_bytes
from ui.figures import feature_maps as figs
from ui.figures.common import PLOTLY_CONFIG, image_figure

PER_PAGE = 64
TABS = ["Channel maps", "Across depth", "Learned filters", "Top examples", "Feature visualisation"]
ORDER_LABELS = {"channel": "Index", "mean": "Mean", "max": "Peak"}


def shape_text(shape: tuple[int, ...]) -> str:
    """``(16, 32, 32)`` -> ``16×32×32``."""
    return "×".join(map(str, shape))


def default_layer(layers: list[LayerInfo]) -> str:
    """The first convolution, else the first layer."""
    return next((la.name for la in layers if la.type == "Conv2d"), layers[0].name)


def pick_channel(layer: str, count: int, label: str) -> int:
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


def _pick_tile() -> None:
    picked = figs.clicked_channel(st.session_state.get("fm_grid"))
    if picked is not None:
        st.session_state["fm_channel"] = picked


def channel_maps_tab(sample: fmaps.SampleMaps, layer: str, channel: int) -> None:
    activation = sample.arrays[layer]
    if activation.ndim != 3:
        st.info(
            f"**{layer}** has no spatial maps (its output is {shape_text(activation.shape)}), "
            "so there is no grid: here is its activation for this input instead. "
            "Pick a convolutional layer to see channel maps."
        )
        if activation.ndim == 1:
            st.plotly_chart(
                figs.unit_strip_figure(activation, channel, f"{layer}: {len(activation)} units"),
                config=PLOTLY_CONFIG,
            )
        else:
            st.plotly_chart(figs.token_figure(activation, layer), config=PLOTLY_CONFIG)
        return
    count = activation.shape[0]
    c_order, c_page, c_scale = st.columns([2, 1.2, 1.5], vertical_alignment="bottom")
    order = c_order.segmented_control(
        "Order channels by", fmaps.ORDERS, key="fm_order", default="channel", required=True,
        format_func=ORDER_LABELS.get, **state.VIEW,
    )  # fmt: skip
    pages = -(-count // PER_PAGE)
    page = 0
    if pages > 1:
        wanted = (layer, channel, order)
        if st.session_state.get("fm_page_for") != wanted:  # page to the selected channel
            st.session_state["fm_page_for"] = wanted
            ranks = fmaps.channel_order(activation, order)
            st.session_state["fm_page"] = fmaps.page_of_channel(channel, ranks, PER_PAGE)
        st.session_state["fm_page"] = min(st.session_state.get("fm_page", 0), pages - 1)
        page = c_page.selectbox(
            "Channels shown", range(pages), **state.scoped("fm_page", 0),
            format_func=lambda p: f"{p * PER_PAGE + 1}–{min((p + 1) * PER_PAGE, count)} of {count}",
        )  # fmt: skip
    shared = c_scale.toggle(
        "One colour scale",
        key="fm_shared",
        **state.VIEW,
        help="Off: each map scaled to its own peak.",
    )
    grid = fmaps.channel_grid(activation, layer, order, page, PER_PAGE)
    left, right = st.columns([1, 2.6], gap="medium")
    with left:
        st.plotly_chart(image_figure(sample.image, "Input", height=230), config=PLOTLY_CONFIG)
        heat = fmaps.channel_at_input(activation, channel, sample.image.shape[1:])
        st.plotly_chart(
            figs.channel_overlay_figure(
                sample.image, heat, f"Channel {channel} over the input", height=230
            ),
            config=PLOTLY_CONFIG,
        )
        st.caption(figs.overlay_key(heat))
        m1, m2 = st.columns(2)
        m1.metric("Mean", f"{activation[channel].mean():.3g}")
        m2.metric("Peak", f"{activation[channel].max():.3g}")
    with right:
        st.plotly_chart(
            figs.channel_grid_figure(grid, channel, shared),
            config=PLOTLY_CONFIG,
            key="fm_grid",
            on_select=_pick_tile,
            selection_mode="points",
        )
        st.caption(
            f"{len(grid.channels)} of {count} channels, each a {shape_text(activation.shape[1:])} "
            "map; the number in a corner is the channel, the red frame the selected one. "
            + figs.grid_key(grid, shared)
            + " Click a tile to select its channel."
        )
        d1, d2, _ = st.columns([1, 1, 2])
        stem = f"{st.session_state['_run']}_{layer}_maps"
        d1.download_button(
            "CSV", lambda: exports.grid_csv(activation), f"{stem}.csv", "text/csv",
            key="fm_csv", icon=":material/download:", help="Every channel: channel,row,col,value.",
        )  # fmt: skip
        d2.download_button(
            "NPY", lambda: npy_bytes(activation), f"{stem}.npy",
            "application/octet-stream", key="fm_npy", icon=":material/download:",
            help="The layer's maps for this input as a [C, H, W] array.",
        )  # fmt: skip


def depth_tab(sample: fmaps.SampleMaps, spatial: list[LayerInfo]) -> None:
    if not spatial:
        st.info("This model has no layer with spatial maps, so there is no strip across depth.")
        return
    convs = [la.name for la in spatial if la.type == "Conv2d"] or [la.name for la in spatial]
    c1, c2 = st.columns([1, 3])
    summary = c1.segmented_control(
        "Summarise each layer by", fmaps.SUMMARIES, key="fm_depth_summary", default="max",
        required=True, format_func={"max": "Strongest channel", "mean": "Mean of channels"}.get,
        **state.VIEW,
    )  # fmt: skip
    names = c2.multiselect(
        "Layers",
        [la.name for la in spatial],
        default=convs[:24],
        **state.scoped("fm_depth_layers", convs[:24]),
    )
    if not names:
        st.info("Pick at least one layer.")
        return
    order = {la.name: i for i, la in enumerate(spatial)}
    strip = fmaps.depth_strip(sample, sorted(names, key=order.get), summary)
    st.plotly_chart(figs.depth_strip_figure(strip), config=PLOTLY_CONFIG)
    st.caption(
        figs.depth_strip_key(strip) + " "
        "One map per layer for this input, from the first layer to the last. Resolution shrinks "
        "with depth while each position sees more of the image: early maps follow edges and "
        "colours, later ones respond to whole parts. "
        + ("Each tile is the channel with the highest mean activation." if summary == "max" else "")
    )


def filters_tab(run: str) -> None:
    shown = False
    try:
        filters = cache.weight_images(run, "filters")
    except ValueError:
        filters = None
    if filters is not None:
        k, _, h, w = filters.weights.shape
        st.subheader(f"First convolution ({filters.layer}): {k} filters of {h}×{w}")
        st.plotly_chart(figs.weights_figure(filters), config=PLOTLY_CONFIG)
        st.caption(
            figs.weights_key(filters) + " Trained filters look like oriented edges, spots and "
            "colour blobs; random ones look like noise."
        )
        shown = True
    try:
        weights = cache.weight_images(run, "inputs")
    except ValueError:
        weights = None
    if weights is not None and filters is None:
        k = len(weights.weights)
        st.subheader(f"First fully connected layer ({weights.layer}): {k} units")
        st.plotly_chart(figs.weights_figure(weights, cols=16, what="unit"), config=PLOTLY_CONFIG)
        st.caption(
            "Each square is one unit's weights laid out as an input image: the pattern the unit "
            "is looking for. " + figs.weights_key(weights, "unit")
        )
        shown = True
    if not shown:
        st.info("This model has neither a convolution nor a fully connected first layer.")


def top_examples_tab(run: str, info: LayerInfo, channel: int) -> None:
    layer = info.name
    c1, c2 = st.columns([2, 1])
    k = c1.slider("Examples", 4, 24, 12, step=4, key="fm_k", **state.VIEW)
    ranking = c2.segmented_control(
        "Rank by", topk.RANKINGS, key="fm_rank", **state.VIEW, default="max", required=True,
        format_func={"max": "Peak", "mean": "Mean"}.get,
    )  # fmt: skip
    try:
        stats = cache.channel_stats(run, layer)
        top = topk.top_k(stats, channel, k, ranking)
    except ValueError as err:
        st.error(str(err))
        return
    loaded = cache.loaded_run(run)
    images = loaded.dataset.images[loaded.splits.val[top.indices]]
    names = loaded.info.dataset.class_names
    labels = loaded.dataset.labels[loaded.splits.val[top.indices]]
    titles = [
        f"#{i} {names[y]} · {s:.2g}"
        for i, y, s in zip(top.indices, labels, top.scores, strict=True)
    ]
    rf = cache.receptive_field(run, layer) if info.spatial else None
    boxes = rf.boxes(top.positions) if rf is not None else None
    st.plotly_chart(figs.examples_figure(images, boxes, titles), config=PLOTLY_CONFIG)
    n = len(stats.maxima)
    if rf is None or boxes is None:
        st.caption(
            f"The {k} of {n} validation samples with the highest value of unit {channel} "
            f"in {layer} (sample index, true class, value)."
        )
        return
    st.caption(
        f"The {k} of {n} validation samples on which channel {channel} of {layer} fires "
        f"hardest (sample index, true class, {ranking} activation). The red box is the "
        f"receptive field of the strongest position: {rf.size[0]}×{rf.size[1]} input pixels"
        + (", the whole image." if rf.covers_image else ".")
    )
    st.markdown("**What the unit sees at its peak**")
    crops = topk.crops(images, boxes)
    st.plotly_chart(
        figs.examples_figure(crops, None, [f"#{i}" for i in top.indices], cols=12),
        config=PLOTLY_CONFIG,
    )
    options = [int(i) for i in top.indices]
    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
    target = c1.selectbox("Open an example's feature maps", options, key="fm_open")
    c2.button("Open", key="fm_open_go", on_click=state.open_sample, args=(target,))


def feature_vis_tab(run: str, layer: str, channel: int) -> None:
    c1, c2, c3 = st.columns(3)
    steps = c1.slider("Steps", 32, 512, 128, step=32, key="fm_vis_steps", **state.VIEW)
    parameterisation = c2.segmented_control(
        "Parameterisation", PARAMETERISATIONS, key="fm_vis_param", **state.VIEW, default="fourier",
        required=True, format_func={"fourier": "Fourier (1/f)", "pixel": "Pixels"}.get,
    )  # fmt: skip
    decorrelate = c3.toggle("Decorrelated colour", True, key="fm_vis_decor", **state.VIEW)
    with st.expander("Transformation robustness"):
        t1, t2, t3 = st.columns(3)
        jitter = t1.slider("Jitter (pixels)", 0, 8, 2, key="fm_vis_jitter", **state.VIEW)
        scale = t2.slider("Zoom (±%)", 0, 20, 5, key="fm_vis_scale", **state.VIEW)
        rotate = t3.slider("Rotation (±°)", 0, 30, 5, key="fm_vis_rotate", **state.VIEW)
    config = FeatureVisConfig(
        steps=steps, jitter=jitter, scale=scale / 100, rotate=float(rotate),
        parameterisation=parameterisation, decorrelate=decorrelate,
    )  # fmt: skip
    key = (run, layer, channel, config)
    if st.button(
        "Synthesise an input", type="primary", key="fm_vis_go", icon=":material/auto_awesome:"
    ):
        try:  # draws its own progress bar (steps, time left); Stop interrupts it
            st.session_state["fm_vis"] = (key, cache.feature_vis(run, layer, channel, config))
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
    left.plotly_chart(
        image_figure(result.image, f"{layer} · channel {channel}", height=300), config=PLOTLY_CONFIG
    )
    with right:
        m1, m2 = st.columns(2)
        m1.metric("Activation of a grey start", f"{result.start:.3g}")
        m2.metric("Activation of the result", f"{result.final:.3g}", f"{result.gain:+.3g}")
        st.plotly_chart(figs.objective_figure(result.objective), config=PLOTLY_CONFIG)
    st.caption(
        "Left: the synthesised input. Right: the optimised value at each step (on the randomly "
        "transformed input; for a ReLU layer, its input before the ReLU)."
    )


selection = state.require_selection()
run = selection.run
st.title("Feature maps")
st.caption(
    "What each layer responds to: every channel's map for one input, how the picture changes "
    "with depth, the learned filters, the validation images that excite a channel most, and an "
    "input synthesised to excite it."
)
all_layers = cache.layers(run)
layers = {la.name: la for la in all_layers if len(la.output_shape) in (1, 2, 3)}
spatial = [la for la in layers.values() if la.spatial]
state.check_url("fm_layer", layers, "This model has no layer “{}” with maps or units.", "layer")

sample = cache.sample_maps(run, selection.inputs)
if sample.note:
    st.info(sample.note)

c_layer, c_channel = st.columns([3, 1], vertical_alignment="bottom")
first = default_layer(list(layers.values()))
layer = c_layer.selectbox(
    "Layer", list(layers), index=list(layers).index(first), **state.scoped("fm_layer", first)
)
info = layers[layer]
c_layer.caption(f"{info.type} · output {shape_text(info.output_shape)}")
activation = sample.arrays[layer]
units = activation.shape[0] if activation.ndim != 2 else activation.shape[1]
with c_channel:
    channel = pick_channel(layer, units, "Channel" if info.spatial else "Unit")
bad = (
    np.isnan(activation).any(axis=tuple(range(1, activation.ndim))) if activation.ndim > 1 else None
)
if np.isnan(activation).any():
    where = f"{int(bad.sum())} of {len(bad)} channels contain" if bad is not None else "It contains"
    st.warning(
        f"{where} NaN for this input: the weights may have diverged. NaN shows as gaps, "
        "and such channels sort last."
    )

tabs = st.tabs(TABS, key="fm_tab", on_change="rerun", bind="query-params")
with tabs[0]:
    if tabs[0].open:
        channel_maps_tab(sample, layer, channel)
with tabs[1]:
    if tabs[1].open:
        depth_tab(sample, spatial)
with tabs[2]:
    if tabs[2].open:
        filters_tab(run)
with tabs[3]:
    if tabs[3].open:
        top_examples_tab(run, info, channel)
with tabs[4]:
    if tabs[4].open:
        feature_vis_tab(run, layer, channel)
