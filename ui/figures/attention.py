"""Figures of the attention page: head grids over the input, the token x token matrix, the chart
of head statistics per layer, attention on the object per layer, token norms. Inputs are numpy
arrays and core's result dataclasses; no torch here.

Attention is drawn with a colour scale that fades to transparent at zero, so the input stays
visible where a head does not look, and each cell is scaled to its own maximum unless asked
otherwise (a head that spreads its attention thinly would otherwise be invisible).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from core.attention.layout import TokenLayout
from core.attention.objects import ObjectSummary
from ui.figures.common import SEQUENTIAL, overlay_figure, square_image_axes

ATTENTION_SCALE = [
    [0.0, "rgba(13, 8, 135, 0)"],
    [0.2, "rgba(126, 3, 168, 0.45)"],
    [0.5, "rgba(204, 71, 120, 0.75)"],
    [0.8, "rgba(248, 149, 64, 0.9)"],
    [1.0, "rgba(240, 249, 33, 0.95)"],
]
HEAD_COLOURS = qualitative.Dark24


def _overlay_traces(image: np.ndarray, heat: np.ndarray, zmax: float) -> tuple[Any, ...]:
    """The input and the attention heatmap over it, ready to add to any subplot."""
    fig = overlay_figure(
        image,
        heat,
        colorscale=ATTENTION_SCALE,
        zmid=None,
        zmax=zmax or 1.0,
        opacity=1.0,
        in_colour=True,
    )
    fig.data[1].update(zmin=0, hovertemplate="x %{x}, y %{y}: %{z:.3f}<extra></extra>")
    return fig.data


def overlay_grid(
    image: np.ndarray,
    heats: np.ndarray,
    row_titles: Sequence[str],
    column_titles: Sequence[str],
    shared_scale: bool = False,
    cell_height: int | None = None,
) -> go.Figure:
    """A grid of attention maps over one input.

    Args:
        image: ``[C, H, W]`` input in [0, 1].
        heats: ``[rows, cols, H, W]`` attention per pixel (NaN where no patch covers it).
        row_titles: one per row (shown on the left).
        column_titles: one per column (shown on top).
        shared_scale: one colour scale for all cells instead of one per cell.
        cell_height: pixels per row (default: as wide as a cell of a page-wide grid).
    """
    rows, cols = heats.shape[:2]
    if cell_height is None:
        cell_height = max(70, min(200, 900 // cols))
    fig = make_subplots(
        rows=rows,
        cols=cols,
        column_titles=list(column_titles),
        horizontal_spacing=0.006,
        vertical_spacing=min(0.02, 0.3 / rows),
    )
    top = float(np.nanmax(heats)) if shared_scale else None
    for r in range(rows):
        for c in range(cols):
            zmax = top if shared_scale else float(np.nanmax(heats[r, c]))
            for trace in _overlay_traces(image, heats[r, c], zmax):
                fig.add_trace(trace, row=r + 1, col=c + 1)
        fig.update_yaxes(title_text=row_titles[r], row=r + 1, col=1)
    square_image_axes(fig, rows * cols)
    for r in range(rows):
        fig.update_yaxes(
            visible=True,
            showticklabels=False,
            ticks="",
            showgrid=False,
            zeroline=False,
            showline=False,
            title_font=dict(size=12),
            row=r + 1,
            col=1,
        )
    fig.update_annotations(font=dict(size=12))
    fig.update_layout(height=rows * cell_height + 40, margin=dict(l=60, r=8, t=30, b=8))
    return fig


def query_figure(
    image: np.ndarray,
    heat: np.ndarray,
    grid: tuple[int, int],
    patch: tuple[int, int],
    query_patch: tuple[int, int] | None,
    title: str = "",
    height: int = 420,
) -> go.Figure:
    """One head's attention from the query over the input, with the patch grid; clickable.

    Every patch has an invisible point at its centre, so a click selects a point whose ``x``,
    ``y`` lie in the patch. The query patch, if any, is outlined.
    """
    fig = go.Figure(_overlay_traces(image, heat, float(np.nanmax(heat))))
    ph, pw = patch
    rows, cols = np.meshgrid(np.arange(grid[0]), np.arange(grid[1]), indexing="ij")
    fig.add_trace(
        go.Scatter(
            x=((cols + 0.5) * pw - 0.5).ravel(),
            y=((rows + 0.5) * ph - 0.5).ravel(),
            customdata=np.stack([rows.ravel(), cols.ravel()], -1),
            mode="markers",
            marker=dict(size=max(6, min(40, 300 // max(grid))), color="rgba(0,0,0,0)"),
            hovertemplate="patch (row %{customdata[0]}, col %{customdata[1]})<extra></extra>",
            showlegend=False,
        )
    )
    line = dict(color="rgba(255,255,255,0.25)", width=1)
    for r in range(1, grid[0]):
        fig.add_hline(y=r * ph - 0.5, line=line)
    for c in range(1, grid[1]):
        fig.add_vline(x=c * pw - 0.5, line=line)
    if query_patch is not None:
        r, c = query_patch
        fig.add_shape(
            type="rect",
            x0=c * pw - 0.5,
            x1=(c + 1) * pw - 0.5,
            y0=r * ph - 0.5,
            y1=(r + 1) * ph - 0.5,
            line=dict(color="#00e5ff", width=3),
        )
    square_image_axes(fig, 1)
    fig.update_layout(
        title=dict(text=title, font=dict(size=13)) if title else None,
        height=height,
        margin=dict(l=4, r=4, t=32 if title else 4, b=4),
        clickmode="event+select",
        dragmode=False,
    )
    return fig


PATCH_LABEL = re.compile(r"patch \(row (\d+), col (\d+)\)")
"""How :meth:`core.attention.TokenLayout.token_label` names a patch token."""


def _short_label(label: str) -> str:
    """``patch (row 1, col 3)`` -> ``r1 c3``, ``register 2`` -> ``reg 2``; others unchanged."""
    match = PATCH_LABEL.fullmatch(label)
    if match:
        return f"r{match[1]} c{match[2]}"
    return label.replace("register ", "reg ")


def token_ticks(labels: Sequence[str], max_ticks: int = 12) -> tuple[list[int], list[str]]:
    """Sparse, readable ticks for a token axis: every extra token (CLS, registers) and the
    first patch of evenly spaced patch rows (``r3 c0``), about ``max_ticks`` in all; a row tick
    too close to an extra token's is left out.

    Labels that are not patches (see :meth:`core.attention.TokenLayout.token_label`) other
    than a few leading extra tokens get evenly spaced ticks instead.

    Returns:
        Tick positions (token indices) and their short texts.
    """
    matches = [PATCH_LABEL.fullmatch(label) for label in labels]
    extra = [t for t, m in enumerate(matches) if m is None][: max_ticks // 3]
    rows = [t for t, m in enumerate(matches) if m is not None and m[2] == "0"]
    if not rows:
        rows = [t for t in range(len(labels)) if t not in extra]
    budget = max(max_ticks - len(extra), 1)
    gap = len(labels) / (2 * max_ticks)  # closer than this, two tick texts would overprint
    rows = [t for t in rows[:: -(-len(rows) // budget)] if all(abs(t - e) >= gap for e in extra)]
    picked = sorted({*extra, *rows})
    return picked, [_short_label(labels[t]) for t in picked]


def token_matrix_figure(
    probs: np.ndarray,
    labels: Sequence[str],
    query: int,
    n_extra_first: int,
    title: str = "",
    height: int = 420,
) -> go.Figure:
    """A head's full attention ``[T, T]``: rows are queries, columns are keys.

    Both axes carry sparse token ticks (:func:`token_ticks`: ``CLS``, ``r0 c0``, ``r1 c0``,
    ...); the hover names every cell.

    Args:
        probs: ``[T, T]`` probabilities.
        labels: a name per token (:meth:`core.attention.TokenLayout.token_label`).
        query: the query token, whose row is outlined.
        n_extra_first: leading extra tokens; a line separates them from the patches.
        title: the chart's title (none when empty).
        height: figure height in pixels.
    """
    t = probs.shape[0]
    names = np.asarray(labels, dtype=object)
    hover = np.stack(np.broadcast_arrays(names[:, None], names[None, :]), -1)
    fig = go.Figure(
        go.Heatmap(
            z=probs,
            customdata=hover,
            colorscale=SEQUENTIAL,
            zmin=0,
            colorbar=dict(thickness=12, title=dict(text="attention", side="right")),
            hovertemplate="%{customdata[0]} → %{customdata[1]}: %{z:.3f}<extra></extra>",
        )
    )
    fig.add_shape(
        type="rect", x0=-0.5, x1=t - 0.5, y0=query - 0.5, y1=query + 0.5,
        line=dict(color="#00e5ff", width=2),
    )  # fmt: skip
    if n_extra_first:
        edge = n_extra_first - 0.5
        for add in (fig.add_hline, fig.add_vline):
            add(edge, line=dict(color="white", width=1, dash="dot"))
    tickvals, ticktext = token_ticks(labels)
    ticks = dict(
        tickmode="array", tickvals=tickvals, ticktext=ticktext, tickfont=dict(size=10),
        ticks="outside", ticklen=3, showgrid=False, zeroline=False,
    )  # fmt: skip
    fig.update_xaxes(title_text="key token", constrain="domain", **ticks)
    fig.update_yaxes(
        title_text="query token", autorange="reversed", scaleanchor="x", constrain="domain", **ticks
    )
    fig.update_layout(
        title=dict(text=title, font=dict(size=13)) if title else None,
        height=height,
        margin=dict(l=8, r=8, t=32, b=8),
    )
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def head_statistic_figure(
    values: np.ndarray, title: str, y_title: str, reference: tuple[float, str] | None = None
) -> go.Figure:
    """A statistic per head against depth, as in the ViT paper's mean-attention-distance chart.

    Args:
        values: ``[N, layers, heads]`` per sample; dots are the mean over samples, bars the
            standard deviation.
        title: the chart's title.
        y_title: the y axis title (with unit).
        reference: an optional horizontal line ``(value, label)``.
    """
    _, layers, heads = values.shape
    mean, std = values.mean(0), values.std(0)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=np.arange(layers),
            y=mean.mean(1),
            mode="lines",
            line=dict(color="rgba(120,120,120,0.6)", dash="dot"),
            name="mean of heads",
            hovertemplate="layer %{x}: %{y:.2f}<extra>mean of heads</extra>",
        )
    )
    offsets = np.linspace(-0.18, 0.18, heads) if heads > 1 else np.zeros(1)
    for h in range(heads):
        fig.add_trace(
            go.Scatter(
                x=np.arange(layers) + offsets[h],
                y=mean[:, h],
                error_y=dict(array=std[:, h], thickness=1, width=0, color="rgba(0,0,0,0.2)"),
                customdata=np.arange(layers),
                mode="markers",
                marker=dict(size=8, color=HEAD_COLOURS[h % len(HEAD_COLOURS)]),
                name=f"head {h}",
                hovertemplate=f"layer %{{customdata}}, head {h}: %{{y:.2f}}<extra></extra>",
            )
        )
    if reference is not None:
        fig.add_trace(_reference_line(*reference, layers))
    fig.update_xaxes(
        title_text="layer (depth)", tickmode="linear", dtick=1, range=[-0.5, layers - 0.5]
    )
    fig.update_yaxes(title_text=y_title, rangemode="tozero")
    fig.update_layout(
        title=dict(text=title, font=dict(size=14)),
        height=420,
        margin=dict(l=50, r=10, t=40, b=40),
        legend=dict(font=dict(size=11), orientation="h", yanchor="top", y=-0.22, x=0),
    )
    return fig


def _reference_line(value: float, label: str, layers: int) -> go.Scatter:
    """A dashed horizontal line across all layers, named in the legend (not drawn over dots)."""
    return go.Scatter(
        x=[-0.5, layers - 0.5],
        y=[value, value],
        mode="lines",
        line=dict(color="grey", dash="dash", width=1),
        name=f"{label} ({value:.2f})",
        hovertemplate=f"{label}: %{{y:.2f}}<extra></extra>",
    )


def object_share_figure(summary: ObjectSummary) -> go.Figure:
    """Per layer: share of CLS attention and of rollout on the object, against its area share.

    Args:
        summary: per-layer means over the samples (:func:`core.attention.objects.summarise`).
    """
    layers = len(summary.layers)
    x = np.arange(layers)
    fig = go.Figure()
    for values, name, colour in (
        (summary.cls_share, "CLS attention (mean of heads)", HEAD_COLOURS[0]),
        (summary.rollout_share, "rollout from CLS", HEAD_COLOURS[1]),
    ):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=values,
                mode="lines+markers",
                marker=dict(size=9, color=colour),
                line=dict(color=colour),
                name=name,
                hovertemplate=f"layer %{{x}}: %{{y:.1%}}<extra>{name}</extra>",
            )
        )
    fig.add_trace(_reference_line(summary.area_share, "object's share of the image", layers))
    fig.update_xaxes(
        title_text="layer (depth)", tickmode="linear", dtick=1, range=[-0.5, layers - 0.5]
    )
    fig.update_yaxes(title_text="share on the object", tickformat=".0%", range=[0, 1])
    fig.update_layout(
        title=dict(text=f"Attention on the object (n = {summary.n:,})", font=dict(size=14)),
        height=380,
        margin=dict(l=50, r=10, t=40, b=40),
        legend=dict(font=dict(size=11), orientation="h", yanchor="top", y=-0.2, x=0),
    )
    return fig


def _with_extra_column(values: np.ndarray, layout: TokenLayout) -> np.ndarray:
    """``[T]`` per-token values -> ``[rows, cols + 2]``: the patch grid, a gap, then the extra
    tokens (CLS first) top to bottom in the last column (NaN below them)."""
    rows, cols = layout.grid
    out = np.full((max(rows, layout.n_tokens - layout.n_patches), cols + 2), np.nan)
    out[:rows, :cols] = values[layout.patches].reshape(rows, cols)
    extra = [t for t in range(layout.n_tokens) if layout.patch_of(t) is None]
    out[: len(extra), cols + 1] = values[extra]
    return out


def token_norm_figure(
    norms: np.ndarray, outliers: np.ndarray, layout: TokenLayout, titles: Sequence[str]
) -> go.Figure:
    """Every token's L2 norm per block: the patch grid, CLS and extra tokens in a column beside it.

    Args:
        norms: ``[layers, T]`` token norms.
        outliers: ``[layers, T]`` bool, tokens flagged as high-norm outliers (marked ×).
        layout: which tokens are patches.
        titles: one per layer.
    """
    layers = len(norms)
    fig = make_subplots(rows=1, cols=layers, subplot_titles=list(titles), horizontal_spacing=0.01)
    labels = np.array(layout.token_labels(), dtype=object)
    names = _with_extra_column(np.arange(layout.n_tokens, dtype=float), layout)
    text = np.where(np.isnan(names), "", labels[np.nan_to_num(names).astype(int)])
    for i in range(layers):
        z = _with_extra_column(norms[i], layout)
        fig.add_trace(
            go.Heatmap(
                z=z,
                text=text,
                colorscale=SEQUENTIAL,
                showscale=False,
                hovertemplate="%{text}: norm %{z:.2f}<extra></extra>",
            ),
            row=1,
            col=i + 1,
        )
        flagged = np.flatnonzero(outliers[i])
        spots = [np.argwhere(names == t)[0] for t in flagged]
        fig.add_trace(
            go.Scatter(
                x=[s[1] for s in spots],
                y=[s[0] for s in spots],
                mode="markers",
                marker=dict(symbol="x", size=9, color="red", line=dict(width=1, color="white")),
                hoverinfo="skip",
                showlegend=False,
            ),
            row=1,
            col=i + 1,
        )
    square_image_axes(fig, layers)
    fig.update_annotations(font=dict(size=11))
    fig.update_layout(height=max(150, 900 // layers) + 40, margin=dict(l=8, r=8, t=30, b=8))
    return fig
