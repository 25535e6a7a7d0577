"""The attention page's views, one function per section: widgets -> a cached analysis -> a figure.

Why it exists: the page is layout only; the sections share one input's :class:`AttentionMaps`
and the :class:`Pick` of the controls, which the page passes along.

What can go wrong: the query, layer and head widgets keep their keys (``att_query``,
``att_layer``, ``att_head``, ``att_shared``), which are URL parameters; renaming one breaks the
links that hold it. A click on the large image is read through ``st.session_state`` because a
chart's ``on_select`` callback takes no arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from core.analysis import Inputs
from core.attention.maps import AttentionMaps, MapsOptions, query_attention
from core.attention.objects import summarise
from ui import cache, state
from ui.exports import head_statistics_csv, long_csv
from ui.figures import memo
from ui.figures.attention import (
    head_statistic_figure,
    object_share_figure,
    overlay_grid,
    query_figure,
    token_matrix_figure,
    token_norm_figure,
)
from ui.figures.common import PLOTLY_CONFIG

STATISTICS_SPLIT = "val"
"""The split the head statistics cover (the page's heading names it)."""


@dataclass(frozen=True)
class Pick:
    """What the controls picked.

    Attributes:
        query: the query token whose attention the views show.
        layer: the layer shown up close.
        head: the head shown up close.
        shared_scale: one colour scale for every head of the grid.
    """

    query: int
    layer: int
    head: int
    shared_scale: bool


def no_attention(run: str, reason: str) -> None:
    """Why ``run`` shows no attention, and a button for each run that has some."""
    st.warning(f"**{run}**: {reason}")
    others = cache.attention_runs()
    if not others:
        st.info("No run has attention yet: train a `vit` on the Home page.")
        return
    st.markdown("Runs with attention:")
    for name in others:
        st.button(name, key=f"att_goto_{name}", on_click=state.choose_run, args=(name,))


def sample_maps(selection: state.Selection) -> AttentionMaps:
    """The attention maps (N = 1) of the selected input, with their rollout."""
    return cache.analysis(
        selection.run, "attention.maps", selection.inputs, MapsOptions(), "Reading attention"
    )


def summary(selection: state.Selection, maps: AttentionMaps) -> None:
    """One caption: the model's attention layout, the input, and what the model predicts."""
    layout = maps.layout
    n_layers, n_heads = maps.probs.shape[1:3]
    classes = cache.loaded_run(selection.run).info.dataset.class_names
    label = cache.input_label(selection.run, selection.inputs)
    truth = "your image" if label is None else classes[label]
    probabilities = maps.probabilities[0]
    predicted = int(probabilities.argmax())
    st.caption(
        f"{n_layers} layers × {n_heads} heads · {layout.n_tokens} tokens "
        f"({layout.patch_start} extra + a {layout.grid[0]}×{layout.grid[1]} grid of "
        f"{layout.patch[0]}×{layout.patch[1]}-pixel patches) · "
        + (f"sample {selection.sample}: " if selection.image is None else "")
        + f"**{truth}**, predicted **{classes[predicted]}** ({probabilities[predicted]:.0%})"
    )


def _pick_patch() -> None:
    """Click on the large image: the patch under the click becomes the query."""
    layout = st.session_state["att_layout"]
    for point in st.session_state["att_pick"].selection.points:
        token = layout.patch_at(point["y"], point["x"])
        if token is not None:
            st.session_state["att_query"] = token
            return


def controls(maps: AttentionMaps) -> Pick:
    """The query token, the layer and head to look at, and the grid's colour scale."""
    layout = maps.layout
    n_layers, n_heads = maps.probs.shape[1:3]
    st.session_state["att_layout"] = layout
    columns = st.columns([2, 1, 1, 2])
    query = columns[0].selectbox(
        "Query token",
        range(layout.n_tokens),
        **state.scoped("att_query", 0),
        format_func=layout.token_label,
        help="Whose attention to show. Click a patch on the large image below to pick it.",
    )
    layer = columns[1].selectbox(
        "Layer", range(n_layers), **state.scoped("att_layer", 0), format_func=lambda i: f"layer {i}"
    )
    head = columns[2].selectbox(
        "Head", range(n_heads), **state.scoped("att_head", 0), format_func=lambda i: f"head {i}"
    )
    shared = columns[3].toggle(
        "One colour scale for all heads",
        key="att_shared",
        **state.VIEW,
        help="Off: each map is scaled to its own maximum, so diffuse heads stay visible.",
    )
    return Pick(query, layer, head, shared)


def every_head(
    selection: state.Selection, maps: AttentionMaps, image: np.ndarray, pick: Pick
) -> None:
    """Where the query token looks, for every head of every layer, over the input."""
    labels = maps.layout.token_labels()
    n_layers, n_heads = maps.probs.shape[1:3]
    st.caption(
        f"Where the **{labels[pick.query]}** token looks, over the image patches. "
        "Bright is more attention; transparent is none."
    )
    figure = memo.figure(
        overlay_grid,
        image,
        query_attention(maps, pick.query),
        [f"layer {i}" for i in range(n_layers)],
        [f"head {h}" for h in range(n_heads)],
        shared_scale=pick.shared_scale,
    )
    st.plotly_chart(figure, config=PLOTLY_CONFIG, key="att_grid")
    axes = [("layer", range(n_layers)), ("head", range(n_heads)), ("key", labels)]
    st.download_button(
        f"⬇ {labels[pick.query]} over patches, all heads (CSV)",
        lambda: long_csv(maps.probs[0, :, :, pick.query], axes, "attention"),
        file_name=f"{selection.run}_{selection.stem}_query{pick.query}.csv",
        mime="text/csv",
        key="att_csv_query",
    )


def up_close(
    selection: state.Selection, maps: AttentionMaps, image: np.ndarray, pick: Pick
) -> None:
    """One head: where the query looks (click a patch to query it) and its full matrix."""
    layout, labels = maps.layout, maps.layout.token_labels()
    st.caption("Click a patch on the image to make it the query.")
    left, right = st.columns(2)
    left.plotly_chart(
        memo.figure(
            query_figure,
            image,
            query_attention(maps, pick.query)[pick.layer, pick.head],
            layout.grid,
            layout.patch,
            layout.patch_of(pick.query),
            title=f"Where {labels[pick.query]} looks",
        ),
        config=PLOTLY_CONFIG,
        key="att_pick",
        on_select=_pick_patch,
        selection_mode="points",
    )
    matrix = maps.probs[0, pick.layer, pick.head]
    right.plotly_chart(
        memo.figure(
            token_matrix_figure,
            matrix,
            labels,
            pick.query,
            layout.patch_start,
            title="Every query × every key",
        ),
        config=PLOTLY_CONFIG,
        key="att_matrix",
    )
    right.download_button(
        "⬇ This head's matrix (CSV)",
        lambda: long_csv(matrix, [("query", labels), ("key", labels)], "attention"),
        file_name=f"{selection.run}_{selection.stem}_layer{pick.layer}_head{pick.head}.csv",
        mime="text/csv",
        key="att_csv_matrix",
    )


def rollout(selection: state.Selection, maps: AttentionMaps, image: np.ndarray, pick: Pick) -> None:
    """What the query token has drawn on after each layer, through the residual stream."""
    layout, labels = maps.layout, maps.layout.token_labels()
    n_layers = maps.rollout.shape[1]
    st.caption(
        f"What the **{labels[pick.query]}** token has drawn on after each layer, following "
        "attention through the residual connections (Abnar & Zuidema 2020: heads averaged, "
        f"{maps.rollout_residual:.0%} identity added, multiplied through the layers)."
    )
    rolled = maps.rollout[0, :, pick.query]
    st.plotly_chart(
        memo.figure(
            overlay_grid,
            image,
            layout.to_pixels(rolled)[None],
            ["rollout"],
            [f"up to layer {i}" for i in range(n_layers)],
        ),
        config=PLOTLY_CONFIG,
        key="att_rollout",
    )
    st.download_button(
        "⬇ Rollout (CSV)",
        lambda: long_csv(rolled, [("up_to_layer", range(n_layers)), ("key", labels)], "rollout"),
        file_name=f"{selection.run}_{selection.stem}_rollout_query{pick.query}.csv",
        mime="text/csv",
        key="att_csv_rollout",
    )


def heads_across_split(selection: state.Selection) -> None:
    """Mean attention distance and entropy of every head over the validation split."""
    stats = cache.analysis(
        selection.run,
        "attention.head_statistics",
        Inputs(split=STATISTICS_SPLIT),
        label="Measuring every head over the validation split",
    )
    st.caption(
        f"Over all {len(stats.distance)} validation samples, averaged over patch queries "
        f"(computed in {stats.seconds:.1f} s). Bars: spread over samples. Local heads look a "
        "few pixels away; global heads look across the image. In the ViT paper, early layers "
        "mix both and deep layers go global."
    )
    left, right = st.columns(2)
    left.plotly_chart(
        memo.figure(
            head_statistic_figure,
            stats.distance,
            "Mean attention distance",
            "pixels",
            reference=(stats.uniform_distance, "uniform over the image"),
        ),
        config=PLOTLY_CONFIG,
        key="att_distance",
    )
    right.plotly_chart(
        memo.figure(
            head_statistic_figure,
            stats.entropy,
            "Attention entropy",
            "bits",
            reference=(stats.max_entropy, "uniform"),
        ),
        config=PLOTLY_CONFIG,
        key="att_entropy",
    )
    st.download_button(
        "⬇ Head statistics (CSV)",
        lambda: head_statistics_csv(stats),
        file_name=f"{selection.run}_head_statistics.csv",
        mime="text/csv",
        key="att_csv_stats",
    )


def object_attention(selection: state.Selection) -> None:
    """Share of CLS attention and of rollout on the object, per layer, over the validation split."""
    try:
        result = cache.analysis(
            selection.run,
            "attention.object_attention",
            Inputs(split=STATISTICS_SPLIT),
            label="Measuring attention on the object over the validation split",
        )
    except ValueError as err:
        st.info(str(err))
        return
    summary = summarise(result)
    st.caption(
        summary.caption() + " Each patch counts by the share of its pixels inside the object; "
        "the CLS token's attention is averaged over heads and renormalised over the patches. "
        "Uniform attention would sit on the dashed line; above it, the layer looks at the object."
    )
    st.plotly_chart(
        memo.figure(object_share_figure, summary), config=PLOTLY_CONFIG, key="att_object"
    )
    layers = [("layer", range(len(summary.layers)))]
    st.download_button(
        "⬇ Object shares per layer (CSV)",
        lambda: long_csv(
            np.stack([summary.cls_share, summary.rollout_share], axis=1),
            [*layers, ("what", ["cls_attention", "rollout"])],
            "share_on_object",
        ),
        file_name=f"{selection.run}_object_attention.csv",
        mime="text/csv",
        key="att_csv_object",
    )


def token_norms(selection: state.Selection, image: np.ndarray) -> None:
    """Every token's norm per block, outliers flagged, and CLS attention with and without them."""
    norms = cache.analysis(
        selection.run, "attention.token_norms", selection.inputs, label="Measuring token norms"
    )
    layout = norms.layout
    titles = [f"layer {i}" for i in range(len(norms.layers))]
    st.caption(
        "The L2 norm of every token after each block, over the patch grid; the column to the "
        "right of each grid is the CLS token (and any other extra token). Darcet et al. (2024) "
        "found large ViTs turn a few background patches into high-norm scratch tokens that "
        "soak up attention; those are marked ×. " + norms.caption()
    )
    st.plotly_chart(
        memo.figure(token_norm_figure, norms.norms[0], norms.outliers[0], layout, titles),
        config=PLOTLY_CONFIG,
        key="att_norms",
    )
    heats = [layout.to_pixels(norms.cls_attention[0])]
    rows = ["CLS attention"]
    if norms.outliers[0].any():
        heats.append(layout.to_pixels(norms.cls_attention_clean[0]))
        rows.append("without outliers")
    st.plotly_chart(
        memo.figure(overlay_grid, image, np.stack(heats), rows, titles),
        config=PLOTLY_CONFIG,
        key="att_clean",
    )
