"""Plotly figures for the feature-maps page. Inputs are numpy arrays and core results; no torch.

A grid of many channels is one heatmap of tiles (one trace, fast to draw and to rerun) rather
than one subplot per channel; tiles are separated by gaps of NaN.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.featuremaps import ChannelGrid, DepthStrip, WeightImages
from ui.figures import DIVERGING, SEQUENTIAL, square_image_axes, style_image_axes, to_rgb_uint8


def _colours(values: np.ndarray) -> tuple[str, float | None]:
    """Sequential colours for non-negative maps (after a ReLU), diverging around 0 otherwise."""
    return (SEQUENTIAL, None) if np.nanmin(values, initial=0.0) >= 0 else (DIVERGING, 0.0)


def _tile(maps: np.ndarray, cols: int, gap: int = 1) -> np.ndarray:
    """``[K, h, w]`` -> one ``[rows*(h+gap), cols*(w+gap)]`` mosaic, NaN between tiles."""
    k, h, w = maps.shape
    rows = -(-k // cols)
    mosaic = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan, np.float32)
    for i, plane in enumerate(maps):
        r, c = divmod(i, cols)
        mosaic[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = plane
    return mosaic


def channel_grid_figure(
    grid: ChannelGrid, selected: int | None, shared_scale: bool, cols: int = 8
) -> go.Figure:
    """Every map of a grid page as tiles, labelled by channel, the selected one outlined."""
    k, h, w = grid.maps.shape
    cols = min(cols, k)
    maps = grid.maps
    if not shared_scale:
        peak = np.nanmax(np.abs(maps.reshape(k, -1)), axis=1, initial=0.0)
        maps = maps / np.where(peak > 0, peak, 1.0)[:, None, None]
    colours, zmid = _colours(maps)
    raw = _tile(grid.maps, cols)
    channel_of = _tile(
        np.broadcast_to(grid.channels[:, None, None], maps.shape).astype(float), cols
    )
    fig = go.Figure(
        go.Heatmap(
            z=_tile(maps, cols),
            customdata=np.dstack([raw, channel_of]),
            colorscale=colours,
            zmid=zmid,
            showscale=shared_scale,
            colorbar=dict(thickness=10, len=0.6),
            hoverongaps=False,
            hovertemplate="channel %{customdata[1]:.0f}: %{customdata[0]:.3g}<extra></extra>",
        )
    )
    labels, outline = [], []
    for i, channel in enumerate(grid.channels):
        r, c = divmod(i, cols)
        x0, y0 = c * (w + 1) - 0.5, r * (h + 1) - 0.5
        labels.append(
            dict(
                x=x0, y=y0, text=str(channel), showarrow=False, xanchor="left", yanchor="top",
                font=dict(size=10, color="white"), bgcolor="rgba(0,0,0,0.45)",
            )
        )  # fmt: skip
        if channel == selected:
            outline.append(
                dict(
                    type="rect",
                    x0=x0,
                    y0=y0,
                    x1=x0 + w,
                    y1=y0 + h,
                    line=dict(color="#ff4b4b", width=3),
                )
            )
    fig.update_layout(annotations=labels, shapes=outline)
    rows = -(-k // cols)
    return style_image_axes(fig, height=max(160, int(470 * rows * h / (cols * w)) + 10))


def unit_strip_figure(values: np.ndarray, selected: int | None, title: str = "") -> go.Figure:
    """A fully connected layer's activation vector ``[D]`` as a bar strip."""
    colours = np.where(np.arange(len(values)) == selected, "#ff4b4b", "#4c78a8")
    fig = go.Figure(
        go.Bar(
            y=np.nan_to_num(values),
            marker_color=colours,
            hovertemplate="unit %{x}: %{y:.3g}<extra></extra>",
        )
    )
    fig.update_layout(
        title=dict(text=title, font=dict(size=13)) if title else None,
        height=240,
        margin=dict(l=40, r=10, t=30 if title else 10, b=30),
        xaxis_title="unit",
        yaxis_title="activation",
        bargap=0.05,
    )
    return fig


def token_figure(values: np.ndarray, title: str = "") -> go.Figure:
    """A token layer's output ``[T, D]`` as a heatmap (tokens down, features across)."""
    fig = go.Figure(
        go.Heatmap(
            z=values,
            colorscale=DIVERGING,
            zmid=0,
            hovertemplate="token %{y}, feature %{x}: %{z:.3g}<extra></extra>",
        )
    )
    fig.update_layout(
        title=dict(text=title, font=dict(size=13)) if title else None,
        height=320,
        margin=dict(l=40, r=10, t=30 if title else 10, b=30),
        xaxis_title="feature",
        yaxis=dict(title="token", autorange="reversed"),
    )
    return fig


def depth_strip_figure(strip: DepthStrip, per_row: int = 8) -> go.Figure:
    """One small map per layer, first to last, titled with the layer and its resolution."""
    n = len(strip.layers)
    cols = min(per_row, n)
    rows = -(-n // cols)
    titles = [
        f"{name}<br>{m.shape[0]}×{m.shape[1]}" + (f" · ch {c}" if c is not None else "")
        for name, m, c in zip(strip.layers, strip.maps, strip.channels, strict=True)
    ]
    fig = make_subplots(
        rows, cols, subplot_titles=titles, horizontal_spacing=0.02, vertical_spacing=0.12
    )
    for i, plane in enumerate(strip.maps):
        colours, zmid = _colours(plane)
        fig.add_trace(
            go.Heatmap(
                z=plane,
                colorscale=colours,
                zmid=zmid,
                showscale=False,
                hovertemplate="row %{y}, col %{x}: %{z:.3g}<extra></extra>",
            ),
            row=i // cols + 1,
            col=i % cols + 1,
        )
    square_image_axes(fig, n)
    fig.update_annotations(font_size=11)
    fig.update_layout(height=rows * 190 + 30, margin=dict(l=4, r=4, t=40, b=4))
    return fig


def weights_figure(weights: WeightImages, cols: int = 16, tile: int = 28) -> go.Figure:
    """Weight images as a mosaic: RGB when 3 channels, else grey-to-colour (red +, blue −)."""
    k, c, h, w = weights.images.shape
    cols = min(cols, k)
    factor = max(1, tile // max(h, w))
    if c == 3:
        upscaled = [
            np.kron(to_rgb_uint8(img), np.ones((factor, factor, 1), np.uint8))
            for img in weights.images
        ]
        rows = -(-k // cols)
        hh, ww = h * factor, w * factor
        mosaic = np.full((rows * (hh + 2) - 2, cols * (ww + 2) - 2, 3), 255, np.uint8)
        for i, img in enumerate(upscaled):
            r, col = divmod(i, cols)
            mosaic[r * (hh + 2) : r * (hh + 2) + hh, col * (ww + 2) : col * (ww + 2) + ww] = img
        fig = go.Figure(go.Image(z=mosaic, hoverinfo="skip"))
    else:
        planes = weights.images[:, 0] * 2 - 1
        fig = go.Figure(
            go.Heatmap(
                z=_tile(planes, cols), colorscale=DIVERGING, zmid=0, showscale=False,
                hoverongaps=False, hovertemplate="%{z:.2f} of the unit's peak<extra></extra>",
            )
        )  # fmt: skip
        rows = -(-k // cols)
        hh = h
    height = max(120, int(rows * (hh + 2) * 900 / (cols * (w * (factor if c == 3 else 1) + 2))))
    return style_image_axes(fig, height=min(height, 900))


def examples_figure(
    images: np.ndarray,
    boxes: np.ndarray | None,
    titles: Sequence[str],
    cols: int = 8,
) -> go.Figure:
    """Top examples ``[k, C, H, W]`` side by side, each with its receptive-field box."""
    k = len(images)
    cols = min(cols, k)
    rows = -(-k // cols)
    fig = make_subplots(
        rows, cols, subplot_titles=list(titles), horizontal_spacing=0.01, vertical_spacing=0.08
    )
    for i, image in enumerate(images):
        row, col = i // cols + 1, i % cols + 1
        fig.add_trace(go.Image(z=to_rgb_uint8(image), hoverinfo="skip"), row=row, col=col)
        if boxes is not None:
            top, left, bottom, right = boxes[i]
            fig.add_shape(
                type="rect", x0=left - 0.5, y0=top - 0.5, x1=right - 0.5, y1=bottom - 0.5,
                line=dict(color="#ff4b4b", width=2), row=row, col=col,
            )  # fmt: skip
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=11)
    return fig.update_layout(height=rows * 150 + 20, margin=dict(l=4, r=4, t=30, b=4))


def objective_figure(values: np.ndarray) -> go.Figure:
    """The optimised activation per step."""
    fig = go.Figure(go.Scatter(y=values, mode="lines", line=dict(color="#4c78a8")))
    return fig.update_layout(
        height=220,
        margin=dict(l=40, r=10, t=10, b=30),
        xaxis_title="step",
        yaxis_title="activation",
    )


def grid_csv(activation: np.ndarray) -> bytes:
    """``[C, H, W]`` as CSV rows ``channel,row,col,value``."""
    c, h, w = activation.shape
    index = np.indices((c, h, w)).reshape(3, -1).T
    buffer = io.StringIO()
    buffer.write("channel,row,col,value\n")
    np.savetxt(
        buffer,
        np.column_stack([index, activation.reshape(-1)]),
        fmt=["%d", "%d", "%d", "%.6g"],
        delimiter=",",
    )
    return buffer.getvalue().encode()
