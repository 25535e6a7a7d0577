"""Attention: where each head of each layer looks, for one input and across the validation split."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.attention.maps import head_table, query_attention
from ui import cache, state
from ui.exports import csv_text
from ui.figures.attention import (
    head_statistic_figure,
    overlay_grid,
    query_figure,
    token_matrix_figure,
)
from ui.figures.common import PLOTLY_CONFIG


def _pick_patch() -> None:
    """Click on the large image: the patch under the click becomes the query."""
    layout = st.session_state["att_layout"]
    for point in st.session_state["att_pick"].selection.points:
        row, col = (
            int(point["y"] + 0.5) // layout.patch[0],
            int(point["x"] + 0.5) // layout.patch[1],
        )
        if 0 <= row < layout.grid[0] and 0 <= col < layout.grid[1]:
            st.session_state["att_query"] = layout.patch_token(row, col)
            return


selection = state.require_selection()
st.title("Attention")

if not cache.run_has_attention(selection.run):
    st.warning(
        f"**{selection.run}** has no attention layers, so there is no attention to show. "
        "Attention maps need a vision transformer: the built-in `vit` or torchvision's `vit_*`."
    )
    others = cache.attention_runs()
    if others:
        st.markdown("Runs with attention:")
        for name in others:
            st.button(name, key=f"att_goto_{name}", on_click=state.choose_run, args=(name,))
    else:
        st.info("No run has attention yet: train a `vit` on the Home page.")
    st.stop()

run = cache.loaded_run(selection.run)
maps, rollout = cache.sample_attention(selection.run, selection.inputs)
layout = maps.layout
image = cache.input_image(selection.run, selection.inputs)
n_layers, n_heads = maps.probs.shape[1:3]
classes = run.info.dataset.class_names
label = cache.input_label(selection.run, selection.inputs)
truth = "your image" if label is None else classes[label]
probs = np.exp(maps.logits[0] - maps.logits[0].max())
predicted = int(probs.argmax())
st.caption(
    f"{n_layers} layers × {n_heads} heads · {layout.n_tokens} tokens "
    f"({layout.patch_start} extra + a {layout.grid[0]}×{layout.grid[1]} grid of "
    f"{layout.patch[0]}×{layout.patch[1]}-pixel patches) · "
    + (f"sample {selection.sample}: " if selection.image is None else "")
    + f"**{truth}**, predicted **{classes[predicted]}** ({probs[predicted] / probs.sum():.0%})"
)

st.session_state["att_layout"] = layout
controls = st.columns([2, 1, 1, 2])
query = controls[0].selectbox(
    "Query token",
    range(layout.n_tokens),
    **state.scoped("att_query", 0),
    format_func=layout.token_label,
    help="Whose attention to show. Click a patch on the large image below to pick it.",
)
layer = controls[1].selectbox(
    "Layer", range(n_layers), **state.scoped("att_layer", 0), format_func=lambda i: f"layer {i}"
)
head = controls[2].selectbox(
    "Head", range(n_heads), **state.scoped("att_head", 0), format_func=lambda i: f"head {i}"
)
shared = controls[3].toggle(
    "One colour scale for all heads",
    key="att_shared",
    **state.VIEW,
    help="Off: each map is scaled to its own maximum, so diffuse heads stay visible.",
)
labels = [layout.token_label(t) for t in range(layout.n_tokens)]
query_name = labels[query]
query_patch = None
if layout.patch_start <= query < layout.patch_start + layout.n_patches:
    query_patch = divmod(query - layout.patch_start, layout.grid[1])

st.subheader("Every head of every layer")
st.caption(
    f"Where the **{query_name}** token looks, over the image patches. "
    "Bright is more attention; transparent is none."
)
query_maps = query_attention(maps, query)
st.plotly_chart(
    overlay_grid(
        image,
        query_maps,
        [f"layer {i}" for i in range(n_layers)],
        [f"head {h}" for h in range(n_heads)],
        shared_scale=shared,
        cell_height=max(70, min(200, 900 // n_heads)),
    ),
    config=PLOTLY_CONFIG,
    key="att_grid",
)
st.download_button(
    f"⬇ {query_name} over patches, all heads (CSV)",
    csv_text(
        [
            {
                "layer": i,
                "head": h,
                "key": labels[k],
                "attention": float(maps.probs[0, i, h, query, k]),
            }
            for i in range(n_layers)
            for h in range(n_heads)
            for k in range(layout.n_tokens)
        ]
    ),
    file_name=f"{selection.run}_{selection.stem}_query{query}.csv",
    mime="text/csv",
    key="att_csv_query",
)

st.subheader(f"Layer {layer}, head {head} up close")
st.caption("Click a patch on the image to make it the query.")
left, right = st.columns(2)
with left:
    st.plotly_chart(
        query_figure(
            image,
            query_maps[layer, head],
            layout.grid,
            layout.patch,
            query_patch,
            title=f"Where {query_name} looks",
        ),
        config=PLOTLY_CONFIG,
        key="att_pick",
        on_select=_pick_patch,
        selection_mode="points",
    )
with right:
    matrix = maps.probs[0, layer, head]
    fig = token_matrix_figure(matrix, labels, query, layout.patch_start)
    fig.update_layout(title=dict(text="Every query × every key", font=dict(size=13)))
    st.plotly_chart(fig, config=PLOTLY_CONFIG, key="att_matrix")
    st.download_button(
        "⬇ This head's matrix (CSV)",
        csv_text(
            [
                {"query": labels[q], "key": labels[k], "attention": float(matrix[q, k])}
                for q in range(layout.n_tokens)
                for k in range(layout.n_tokens)
            ]
        ),
        file_name=f"{selection.run}_{selection.stem}_layer{layer}_head{head}.csv",
        mime="text/csv",
        key="att_csv_matrix",
    )

st.subheader("Attention rollout")
st.caption(
    f"What the **{query_name}** token has drawn on after each layer, following attention through "
    "the residual connections (Abnar & Zuidema 2020: heads averaged, half identity added, "
    "multiplied through the layers)."
)
rolled = layout.to_pixels(rollout[:, query, :])
st.plotly_chart(
    overlay_grid(
        image,
        rolled[None],
        ["rollout"],
        [f"up to layer {i}" for i in range(n_layers)],
        cell_height=max(70, min(200, 900 // n_layers)),
    ),
    config=PLOTLY_CONFIG,
    key="att_rollout",
)
st.download_button(
    "⬇ Rollout (CSV)",
    csv_text(
        [
            {"up_to_layer": i, "key": labels[k], "rollout": float(rollout[i, query, k])}
            for i in range(n_layers)
            for k in range(layout.n_tokens)
        ]
    ),
    file_name=f"{selection.run}_{selection.stem}_rollout_query{query}.csv",
    mime="text/csv",
    key="att_csv_rollout",
)

st.subheader("Heads across the validation split")
stats = cache.head_statistics(selection.run)
st.caption(
    f"Over all {len(stats.distance)} validation samples, averaged over patch queries "
    f"(computed in {stats.seconds:.1f} s). Bars: spread over samples. Local heads look a few "
    "pixels away; global heads look across the image. In the ViT paper, early layers mix both "
    "and deep layers go global."
)
left, right = st.columns(2)
left.plotly_chart(
    head_statistic_figure(
        stats.distance,
        "Mean attention distance",
        "pixels",
        reference=(stats.uniform_distance, "uniform over the image"),
    ),
    config=PLOTLY_CONFIG,
    key="att_distance",
)
right.plotly_chart(
    head_statistic_figure(
        stats.entropy, "Attention entropy", "bits", reference=(stats.max_entropy, "uniform")
    ),
    config=PLOTLY_CONFIG,
    key="att_entropy",
)
st.download_button(
    "⬇ Head statistics (CSV)",
    csv_text(head_table(stats)),
    file_name=f"{selection.run}_head_statistics.csv",
    mime="text/csv",
    key="att_csv_stats",
)
