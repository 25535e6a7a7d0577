"""Plotly figure builders shared by the pages. Inputs are numpy arrays; no torch here.

Every figure gets :data:`PLOTLY_CONFIG`, whose mode-bar camera button downloads it as PNG.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

PLOTLY_CONFIG = {
    "displaylogo": False,
    "toImageButtonOptions": {"format": "png", "scale": 2, "filename": "layerscope"},
}
DIVERGING = "RdBu_r"
SEQUENTIAL = "Viridis"
SCHEME_SCALES = {"signed": DIVERGING, "nonnegative": SEQUENTIAL}
"""Plotly colour scale per colour scheme of :func:`core.featuremaps.colour_scheme`."""
COLOUR_BAR = dict(thickness=12, outlinewidth=0, tickfont=dict(size=10))
"""The look of every colour bar (pass ``dict(COLOUR_BAR, title=...)``)."""


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """``[C, H, W]`` float image in ``[0, 1]`` (C = 1 or 3) -> ``[H, W, 3]`` uint8."""
    image = np.clip(np.nan_to_num(image), 0, 1)
    if image.shape[0] == 1:
        image = np.repeat(image, 3, axis=0)
    return (image.transpose(1, 2, 0) * 255).round().astype(np.uint8)


def nearest_upscale(image: np.ndarray, size: int) -> np.ndarray:
    """A small image ``[C, H, W]`` in ``[0, 1]`` enlarged to ``[size, size·W/H, 3]`` uint8 by
    nearest neighbour, so ``st.image`` shows crisp pixels instead of a browser-smoothed blur.

    Pass ``size`` at least the display width (twice it for sharp pixels on high-DPI screens);
    an image already that large is returned at its own size.
    """
    rgb = to_rgb_uint8(image)
    h, w = rgb.shape[:2]
    if max(h, w) >= size:
        return rgb
    out_h, out_w = (size, max(1, round(size * w / h))) if h >= w else (round(size * h / w), size)
    rows = np.arange(out_h) * h // out_h
    cols = np.arange(out_w) * w // out_w
    return rgb[rows][:, cols]


def grey_rgb(image: np.ndarray) -> np.ndarray:
    """``[C, H, W]`` image -> ``[H, W, 3]`` uint8 grey, the backdrop of an overlay."""
    return to_rgb_uint8(image).mean(axis=2, keepdims=True).repeat(3, axis=2).astype(np.uint8)


def square_image_axes(fig: go.Figure, cells: int = 1) -> go.Figure:
    """Hides the axes of the first ``cells`` subplots, y pointing down, square pixels."""
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")
    for k in range(1, cells + 1):
        suffix = "" if k == 1 else str(k)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    return fig


def image_figure(image: np.ndarray, title: str = "", height: int = 260) -> go.Figure:
    """An input image ``[C, H, W]`` shown pixel-exact, without axes."""
    fig = go.Figure(go.Image(z=to_rgb_uint8(image)))
    return style_image_axes(fig, title, height)


def overlay_figure(
    image: np.ndarray,
    heat: np.ndarray,
    title: str = "",
    colorscale: str = DIVERGING,
    zmid: float | None = 0.0,
    zmax: float | None = None,
    opacity: float = 0.6,
    height: int = 260,
    colorbar: dict | None = None,
    in_colour: bool = False,
) -> go.Figure:
    """A heatmap ``[H, W]`` over an image ``[C, H, W]`` of the same size.

    ``colorbar``: the heatmap's colour bar settings (shown), or ``None`` for no colour bar.
    ``in_colour``: the image underneath in its own colours (where the object is told apart by
    its colour, as in ``shapes`` on a noisy background), else grey.
    """
    fig = go.Figure(go.Image(z=to_rgb_uint8(image) if in_colour else grey_rgb(image)))
    limit = zmax if zmax is not None else float(np.nanmax(np.abs(heat))) or 1.0
    fig.add_trace(
        go.Heatmap(
            z=heat,
            colorscale=colorscale,
            zmid=zmid,
            zmin=-limit if zmid is not None else None,
            zmax=limit,
            opacity=opacity,
            showscale=colorbar is not None,
            colorbar=colorbar,
            hovertemplate="x %{x}, y %{y}: %{z:.3g}<extra></extra>",
        )
    )
    return style_image_axes(fig, title, height)


def style_image_axes(fig: go.Figure, title: str = "", height: int = 260) -> go.Figure:
    """Square pixels, y down, no ticks, tight margins."""
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    fig.update_layout(
        title=dict(text=title, font=dict(size=13)) if title else None,
        height=height,
        margin=dict(l=4, r=4, t=28 if title else 4, b=4),
    )
    return fig
