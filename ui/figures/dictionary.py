"""Figures of the features page: training curves, health histograms, the feature map, a
feature's images with heatmaps, its activation histogram and class effects. Numpy in, plotly out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui.figures.attention import ATTENTION_SCALE
from ui.figures.common import grey_rgb, square_image_axes

BLUE, RED = "#4c78a8", "#ff4b4b"


def training_figure(history: np.ndarray) -> go.Figure:
    """Fraction of variance explained and mean L0 per training step (``[steps, 3]``)."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    steps = np.arange(1, len(history) + 1)
    fig.add_trace(
        go.Scatter(x=steps, y=history[:, 1], name="variance explained", line=dict(color=BLUE))
    )
    fig.add_trace(
        go.Scatter(x=steps, y=history[:, 2], name="mean L0", line=dict(color="#f58518")),
        secondary_y=True,
    )
    fig.update_yaxes(title_text="variance explained", range=[0, 1.02], secondary_y=False)
    fig.update_yaxes(title_text="active features per token", secondary_y=True, rangemode="tozero")
    return fig.update_layout(
        height=250,
        margin=dict(l=50, r=50, t=10, b=35),
        xaxis_title="step",
        legend=dict(orientation="h", y=1.12),
    )


def density_figure(log_density: np.ndarray, floor: float = -8.0) -> go.Figure:
    """Histogram of log10 firing density over features; dead ones in their own red bar."""
    alive = log_density[log_density > floor]
    fig = go.Figure(
        go.Histogram(
            x=alive,
            nbinsx=40,
            marker_color=BLUE,
            name="features",
            hovertemplate="log10 density %{x}: %{y} features<extra></extra>",
        )
    )
    dead = int((log_density <= floor).sum())
    if dead:
        left = float(alive.min()) - 0.5 if len(alive) else -6.0
        fig.add_trace(go.Bar(x=[left], y=[dead], width=0.2, marker_color=RED, name="dead"))
    return fig.update_layout(
        height=250,
        margin=dict(l=50, r=10, t=10, b=40),
        bargap=0.05,
        showlegend=bool(dead),
        xaxis_title="log10 fraction of tokens on which the feature fires",
        yaxis_title="features",
    )


def feature_map_figure(
    coords: np.ndarray,
    density: np.ndarray,
    labels: Sequence[str],
    highlight: np.ndarray,
    selected: int | None,
) -> go.Figure:
    """Every feature as a point at its decoder direction's PCA position, sized by how often it
    fires; ``highlight`` ``[F]`` bool marks search hits (others fade)."""
    size = 5 + 20 * np.sqrt(density / max(float(density.max()), 1e-12))
    colour = np.where(highlight, BLUE, "#d0d0d0")
    ids = np.arange(len(coords))
    fig = go.Figure(
        go.Scattergl(
            x=coords[:, 0],
            y=coords[:, 1],
            mode="markers",
            customdata=ids,
            marker=dict(size=size, color=colour, line=dict(width=0.5, color="white")),
            text=[
                f"feature {i}: {labels[i]}<br>fires on {d:.2%} of tokens"
                for i, d in enumerate(density)
            ],
            hovertemplate="%{text}<extra></extra>",
            name="features",
        )
    )
    if selected is not None:
        fig.add_trace(
            go.Scattergl(
                x=coords[[selected], 0],
                y=coords[[selected], 1],
                mode="markers",
                marker=dict(size=18, color="rgba(0,0,0,0)", line=dict(width=2, color=RED)),
                hoverinfo="skip",
                name="selected",
            )
        )
    return fig.update_layout(
        height=460,
        margin=dict(l=40, r=10, t=10, b=40),
        showlegend=False,
        xaxis_title="decoder PC 1",
        yaxis_title="decoder PC 2",
        dragmode="pan",
    )


def clicked_feature(event: object) -> int | None:
    """The feature a click on :func:`feature_map_figure` picked, if any."""
    points = (getattr(event, "selection", None) or {}).get("points", []) if event else []
    for point in points:
        custom = point.get("customdata")
        if custom is not None:
            return int(custom[0] if isinstance(custom, list | tuple) else custom)
    return None


def heat_grid_figure(
    images: np.ndarray, heats: np.ndarray, titles: Sequence[str], cols: int = 6
) -> go.Figure:
    """Images ``[k, C, H, W]`` in grey with a feature's map ``[k, H, W]`` over each (transparent
    where the feature is silent), one colour scale for all."""
    k = len(images)
    cols = max(1, min(cols, k))
    rows = -(-k // cols)
    fig = make_subplots(
        rows, cols, subplot_titles=list(titles), horizontal_spacing=0.01, vertical_spacing=0.06
    )
    top = float(np.nanmax(heats)) if heats.size else 1.0
    for i in range(k):
        row, col = i // cols + 1, i % cols + 1
        fig.add_trace(go.Image(z=grey_rgb(images[i]), hoverinfo="skip"), row=row, col=col)
        fig.add_trace(
            go.Heatmap(
                z=heats[i],
                colorscale=ATTENTION_SCALE,
                zmin=0,
                zmax=top or 1.0,
                showscale=i == 0,
                colorbar=dict(thickness=10, title=dict(text="activation", side="right")),
                hovertemplate="x %{x}, y %{y}: %{z:.3g}<extra></extra>",
            ),
            row=row,
            col=col,
        )
    square_image_axes(fig, k)
    fig.update_annotations(font_size=11)
    return fig.update_layout(height=rows * 165 + 30, margin=dict(l=4, r=4, t=30, b=4))


def activation_histogram(histogram: np.ndarray, edges: np.ndarray, density: float) -> go.Figure:
    """A feature's activations on the tokens where it fires, on a log10 axis."""
    centres = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(
        go.Bar(
            x=centres,
            y=histogram,
            width=edges[1] - edges[0],
            marker_color=BLUE,
            hovertemplate="log10 activation %{x:.2f}: %{y} tokens<extra></extra>",
        )
    )
    return fig.update_layout(
        height=230,
        margin=dict(l=50, r=10, t=30, b=40),
        title=dict(text=f"fires on {density:.2%} of tokens", font=dict(size=12)),
        xaxis_title="log10 activation",
        yaxis_title="tokens",
    )


def effects_figure(effects: np.ndarray, class_names: Sequence[str]) -> go.Figure:
    """How a feature's direction moves each class's logit (centred), sorted."""
    order = np.argsort(effects)
    colours = np.where(effects[order] >= 0, BLUE, RED)
    fig = go.Figure(
        go.Bar(
            x=effects[order],
            y=[class_names[i] for i in order],
            orientation="h",
            marker_color=colours,
            hovertemplate="%{y}: %{x:+.3g}<extra></extra>",
        )
    )
    return fig.update_layout(
        height=60 + 24 * len(order),
        margin=dict(l=90, r=10, t=10, b=40),
        xaxis_title="logit change (centred)",
    )


def probabilities_figure(
    before: np.ndarray, after: np.ndarray, class_names: Sequence[str], label: str
) -> go.Figure:
    """Class probabilities of one image before and after steering a feature."""
    fig = go.Figure(
        [
            go.Bar(x=list(class_names), y=before, name="as is", marker_color="#bbbbbb"),
            go.Bar(x=list(class_names), y=after, name=label, marker_color=BLUE),
        ]
    )
    return fig.update_layout(
        height=250,
        margin=dict(l=40, r=10, t=10, b=40),
        barmode="group",
        yaxis=dict(range=[0, 1], title="probability"),
        legend=dict(orientation="h", y=1.15),
    )


def auc_figure(
    feature_auc: np.ndarray, channel_auc: np.ndarray, values: Sequence[str]
) -> go.Figure:
    """Best feature and best channel AUC per factor value, side by side."""
    fig = go.Figure(
        [
            go.Bar(x=list(values), y=feature_auc, name="best SAE feature", marker_color=BLUE),
            go.Bar(
                x=list(values), y=channel_auc, name="best single channel", marker_color="#bbbbbb"
            ),
        ]
    )
    fig.add_hline(y=0.95, line=dict(dash="dot", color=RED), annotation_text="0.95")
    return fig.update_layout(
        height=320,
        margin=dict(l=40, r=10, t=10, b=90),
        barmode="group",
        yaxis=dict(range=[0.4, 1.01], title="AUC"),
        legend=dict(orientation="h", y=1.12),
    )
