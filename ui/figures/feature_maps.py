"""Plotly figures for the feature-maps page. Inputs are numpy arrays and core results; no torch.

A grid of many channels is one heatmap of tiles (one trace, fast to draw and to rerun) rather
than one subplot per channel; tiles are separated by gaps of NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Real

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.feature_maps.maps import (
    NONNEGATIVE,
    SIGNED,
    ChannelGrid,
    DepthStrip,
    colour_key,
    colour_scheme,
)
from core.feature_maps.weights import WeightImages
from ui.figures.common import (
    COLOUR_BAR,
    SCHEME_SCALES,
    nearest_upscale,
    overlay_figure,
    square_image_axes,
    style_image_axes,
    to_rgb_uint8,
)

SELECTED = "#ff4b4b"
"""Outline of the selected channel."""
GREYS = [[0.0, "black"], [0.5, "rgb(128,128,128)"], [1.0, "white"]]
"""The colour bar of RGB filters: per input channel, dark subtracts, bright adds."""
PEAK_TICKS = {SIGNED: ([-1, 0, 1], ["−peak", "0", "+peak"]), NONNEGATIVE: ([0, 1], ["0", "peak"])}
"""Colour-bar ticks of maps divided by their own peak |value|."""
_SHORT = {SIGNED: "signed maps", NONNEGATIVE: "maps ≥ 0"}


def _scale(scheme: str, per_map: bool, what: str = "map") -> dict:
    """Heatmap colour settings for a scheme: scale, range and a colour bar that says which.

    Per-map values are expected already divided by each map's peak ``|value|`` (see
    :func:`_per_map`), so the bar runs over fractions of the peak; shared ones are raw.
    """
    bar = dict(COLOUR_BAR, title=dict(text="activation (one scale)", side="right"))
    settings: dict = dict(colorscale=SCHEME_SCALES[scheme])
    if per_map:
        ticks = PEAK_TICKS[scheme]
        bar.update(
            title=dict(text=f"each {what}'s own range", side="right"),
            tickvals=ticks[0],
            ticktext=ticks[1],
        )
        settings.update(zmin=-1.0 if scheme == SIGNED else 0.0, zmax=1.0)
    if scheme == SIGNED:
        settings.update(zmid=0.0)
    elif not per_map:
        settings.update(zmin=0.0)
    return dict(settings, colorbar=bar, showscale=True)


def _per_map(maps: np.ndarray) -> np.ndarray:
    """``[K, ...]`` each map divided by its own peak ``|value|`` (all-zero maps stay 0)."""
    peak = np.nanmax(np.abs(maps.reshape(len(maps), -1)), axis=1, initial=0.0)
    return maps / np.where(peak > 0, peak, 1.0).reshape(-1, *[1] * (maps.ndim - 1))


def _tile(maps: np.ndarray, cols: int, gap: int = 1) -> np.ndarray:
    """``[K, h, w]`` -> one ``[rows*(h+gap), cols*(w+gap)]`` mosaic, NaN between tiles."""
    k, h, w = maps.shape
    rows = -(-k // cols)
    mosaic = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan, np.float32)
    for i, plane in enumerate(maps):
        r, c = divmod(i, cols)
        mosaic[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = plane
    return mosaic


def grid_key(grid: ChannelGrid, shared_scale: bool) -> str:
    """The one-line colour key of :func:`channel_grid_figure`, for the caption under it."""
    return colour_key(grid.scheme, per_map=not shared_scale)


def _tile_targets(grid: ChannelGrid, cols: int) -> go.Scatter:
    """An invisible point at each tile's centre carrying ``[channel, mean, max]``: a click on
    a tile selects its point, so ``on_select`` returns the channel (see :func:`clicked_channel`).
    """
    k, h, w = grid.maps.shape
    r, c = np.divmod(np.arange(k), cols)
    tile_px = 470 / cols  # the grid's height is set for about 470 px of width
    return go.Scatter(
        x=c * (w + 1) + (w - 1) / 2,
        y=r * (h + 1) + (h - 1) / 2,
        customdata=np.column_stack([grid.channels, grid.means, grid.maxima]).tolist(),
        mode="markers",
        marker=dict(size=float(np.clip(0.7 * tile_px, 10, 60)), color="rgba(0,0,0,0)"),
        hovertemplate="channel %{customdata[0]}: mean %{customdata[1]:.3g}, "
        "peak %{customdata[2]:.3g}<br>click to select<extra></extra>",
        showlegend=False,
    )


def channel_grid_figure(
    grid: ChannelGrid, selected: int | None, shared_scale: bool, cols: int = 8
) -> go.Figure:
    """Every map of a grid page as tiles, labelled by channel, the selected one outlined.

    Colours follow ``grid.scheme`` (see :func:`grid_key`), with a colour bar; each tile is
    clickable (``st.plotly_chart(..., on_select="rerun", selection_mode="points")``, then
    :func:`clicked_channel`).
    """
    k, h, w = grid.maps.shape
    cols = min(cols, k)
    maps = grid.maps if shared_scale else _per_map(grid.maps)
    channel_of = np.broadcast_to(grid.channels[:, None, None], maps.shape).astype(float)
    fig = go.Figure(
        go.Heatmap(
            z=_tile(maps, cols),
            customdata=np.dstack([_tile(channel_of, cols), _tile(grid.maps, cols)]),
            hoverongaps=False,
            hovertemplate="channel %{customdata[0]:.0f}: %{customdata[1]:.3g}<extra></extra>",
            **_scale(grid.scheme, per_map=not shared_scale),
        )
    )
    fig.add_trace(_tile_targets(grid, cols))
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
                dict(type="rect", x0=x0, y0=y0, x1=x0 + w, y1=y0 + h,
                     line=dict(color=SELECTED, width=3))
            )  # fmt: skip
    fig.update_layout(annotations=labels, shapes=outline, clickmode="event+select", dragmode=False)
    rows = -(-k // cols)
    return style_image_axes(fig, height=max(160, int(470 * rows * h / (cols * w)) + 10))


def _first_value(custom: object) -> object:
    """The first entry of a point's ``customdata``: a list, a number, or the object that a
    typed array becomes in the browser (``{"0": 12, "1": ...}``)."""
    if isinstance(custom, Mapping):
        return custom.get("0", custom.get(0))
    if isinstance(custom, Sequence) and not isinstance(custom, str):
        return custom[0] if len(custom) else None
    return custom


def clicked_channel(event: object) -> int | None:
    """The channel of the tile clicked in :func:`channel_grid_figure`, or ``None``.

    ``event`` is what ``st.plotly_chart(..., on_select=..., selection_mode="points")`` returns
    (or leaves in ``st.session_state[key]``): ``{"selection": {"points": [{"customdata":
    [channel, mean, max], ...}]}}``; the last point with a channel wins.
    """
    selection = event.get("selection") if isinstance(event, Mapping) else None
    points = selection.get("points") if isinstance(selection, Mapping) else None
    channel = None
    for point in points or ():
        custom = _first_value(point.get("customdata")) if isinstance(point, Mapping) else None
        if isinstance(custom, Real) and np.isfinite(custom):
            channel = int(custom)
    return channel


def overlay_key(heat: np.ndarray) -> str:
    """The one-line colour key of :func:`channel_overlay_figure`."""
    return colour_key(colour_scheme(heat), per_map=True)


def channel_overlay_figure(
    image: np.ndarray, heat: np.ndarray, title: str = "", height: int = 230
) -> go.Figure:
    """One channel's map ``[H, W]`` (resized to the input) over the grey input ``[C, H, W]``,
    in its colour scheme, with a colour bar of activation values.
    """
    scheme = colour_scheme(heat)
    bar = dict(COLOUR_BAR, title=dict(text="activation", side="right"))
    fig = overlay_figure(
        image, heat, title, colorscale=SCHEME_SCALES[scheme],
        zmid=0.0 if scheme == SIGNED else None, height=height, colorbar=bar,
    )  # fmt: skip
    if scheme == NONNEGATIVE:
        fig.data[1].update(zmin=0.0)
    return fig


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
    """A token layer's output ``[T, D]`` as a heatmap (tokens down, features across), in its
    colour scheme (:func:`core.featuremaps.colour_key` with ``per_map=False``), with a colour bar.
    """
    fig = go.Figure(
        go.Heatmap(
            z=values,
            hovertemplate="token %{y}, feature %{x}: %{z:.3g}<extra></extra>",
            **_scale(colour_scheme(values), per_map=False),
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


def depth_strip_key(strip: DepthStrip) -> str:
    """The one-line colour key of :func:`depth_strip_figure`."""
    return colour_key([colour_scheme(m) for m in strip.maps], per_map=True)


def _strip_axes(schemes: Sequence[str]) -> dict:
    """Layout colour axes for a depth strip: ``coloraxis`` signed, ``coloraxis2`` ≥ 0; both
    per-map (``[-1, 1]`` / ``[0, 1]`` of each map's peak), stacked on the right when both occur.
    """
    both = len(set(schemes)) == 2
    axes = {}
    for name, scheme, y in (("coloraxis", SIGNED, 0.78), ("coloraxis2", NONNEGATIVE, 0.22)):
        scale = _scale(scheme, per_map=True)
        bar = scale["colorbar"]
        if both:
            bar["title"]["text"] = f"{_SHORT[scheme]}<br>each map's own range"
        if both:
            bar.update(len=0.45, y=y, yanchor="middle")
        axes[name] = dict(
            colorscale=scale["colorscale"], cmin=scale["zmin"], cmax=scale["zmax"],
            colorbar=bar, showscale=scheme in schemes,
        )  # fmt: skip
    return axes


def depth_strip_figure(strip: DepthStrip, per_row: int = 8) -> go.Figure:
    """One small map per layer, first to last, titled with the layer and its resolution.

    Each map is scaled to its own peak, in its own scheme (diverging if it has negative values,
    else viridis); a colour bar per scheme present (see :func:`depth_strip_key`).
    """
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
    schemes = [colour_scheme(plane) for plane in strip.maps]
    for i, (plane, scheme) in enumerate(zip(strip.maps, schemes, strict=True)):
        fig.add_trace(
            go.Heatmap(
                z=_per_map(plane[None])[0],
                customdata=plane,
                coloraxis="coloraxis" if scheme == SIGNED else "coloraxis2",
                hovertemplate="row %{y}, col %{x}: %{customdata:.3g}<extra></extra>",
            ),
            row=i // cols + 1,
            col=i % cols + 1,
        )
    square_image_axes(fig, n)
    fig.update_annotations(font_size=11)
    fig.update_layout(
        height=rows * 190 + 30, margin=dict(l=4, r=4, t=40, b=4), **_strip_axes(schemes)
    )
    return fig


def weights_key(weights: WeightImages, what: str = "filter") -> str:
    """The one-line colour key of :func:`weights_figure` (``what``: ``filter`` or ``unit``)."""
    if weights.images.shape[1] == 3:
        return (
            f"Colour: each {what} scaled to its own largest |weight|; grey 0, and in each input "
            "colour channel brighter adds, darker subtracts (so red = adds red)."
        )
    return colour_key(colour_scheme(weights.weights), per_map=True, what=what)


def _rgb_mosaic(images: np.ndarray, cols: int, factor: int) -> np.ndarray:
    """``[K, 3, h, w]`` in ``[0, 1]`` -> ``[H, W, 3]`` uint8 mosaic, upscaled, white gaps."""
    k, _, h, w = images.shape
    rows = -(-k // cols)
    hh, ww = h * factor, w * factor
    mosaic = np.full((rows * (hh + 2) - 2, cols * (ww + 2) - 2, 3), 255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        big = np.kron(to_rgb_uint8(image), np.ones((factor, factor, 1), np.uint8))
        mosaic[r * (hh + 2) : r * (hh + 2) + hh, c * (ww + 2) : c * (ww + 2) + ww] = big
    return mosaic


def _grey_bar(what: str) -> go.Scatter:
    """An empty trace whose only job is the colour bar of an RGB weight mosaic."""
    bar = dict(
        COLOUR_BAR, title=dict(text=f"each {what}'s<br>own range", side="right"),
        tickvals=[-1, 0, 1], ticktext=["−peak", "0", "+peak"],
    )  # fmt: skip
    marker = dict(color=[0.0], colorscale=GREYS, cmin=-1, cmax=1, showscale=True, colorbar=bar)
    return go.Scatter(
        x=[None], y=[None], mode="markers", marker=marker, hoverinfo="skip", showlegend=False
    )


def weights_figure(
    weights: WeightImages, cols: int = 16, tile: int = 28, what: str = "filter"
) -> go.Figure:
    """Weight images as a mosaic with a colour bar: RGB when 3 channels (grey is 0), else one
    plane per unit in its colour scheme (red +, blue −). Key: :func:`weights_key`.
    """
    k, c, h, w = weights.images.shape
    cols = min(cols, k)
    rows = -(-k // cols)
    if c == 3:
        factor = max(1, tile // max(h, w))
        fig = go.Figure([go.Image(z=_rgb_mosaic(weights.images, cols, factor), hoverinfo="skip")])
        fig.add_trace(_grey_bar(what))
        hh, ww = h * factor + 2, w * factor + 2
    else:
        scheme = colour_scheme(weights.weights)
        fig = go.Figure(
            go.Heatmap(
                z=_tile(_per_map(weights.weights[:, 0]), cols), hoverongaps=False,
                hovertemplate="%{z:.2f} of the peak<extra></extra>",
                **_scale(scheme, per_map=True, what=what),
            )
        )  # fmt: skip
        hh, ww = h + 1, w + 1
    height = max(120, int(rows * hh * 900 / (cols * ww)))
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


def _upscaled_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[h, w, 3]`` -> ``[3, H, W]`` by nearest neighbour (``H, W``: multiples of ``h, w``)."""
    factor = (size[0] // rgb.shape[0], size[1] // rgb.shape[1])
    return np.repeat(np.repeat(rgb, factor[0], axis=0), factor[1], axis=1).transpose(2, 0, 1)


def _three_channels(image: np.ndarray) -> np.ndarray:
    return np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image


def pca_colour_grid_figure(images: np.ndarray, rgb: np.ndarray, cols: int = 4) -> go.Figure:
    """Each image beside its PCA colours, ``cols`` pairs a row.

    Args:
        images: ``[N, C, H, W]`` inputs in ``[0, 1]``.
        rgb: ``[N, h, w, 3]`` PCA colours (``H, W`` multiples of ``h, w``).
        cols: pairs per row.
    """
    size = images.shape[2:4]
    pairs = [
        tile
        for image, colours in zip(images, rgb, strict=True)
        for tile in (_three_channels(image), _upscaled_rgb(colours, size))
    ]
    factor = max(1, 96 // size[0])
    mosaic = _rgb_mosaic(np.stack(pairs), 2 * cols, factor)
    fig = go.Figure(go.Image(z=mosaic, hoverinfo="skip"))
    rows = -(-len(images) // cols)
    return style_image_axes(fig, height=min(900, rows * 130 + 20))


def pca_colour_depth_figure(
    image: np.ndarray, rgb: Sequence[np.ndarray], titles: Sequence[str]
) -> go.Figure:
    """One image and its PCA colours at each layer, left to right.

    Args:
        image: ``[C, H, W]`` the input in ``[0, 1]``.
        rgb: per layer ``[h, w, 3]`` colours (any grid).
        titles: one per layer.
    """
    fig = make_subplots(
        rows=1, cols=len(rgb) + 1, subplot_titles=["input", *titles], horizontal_spacing=0.01
    )
    fig.add_trace(go.Image(z=nearest_upscale(image, 128), hoverinfo="skip"), row=1, col=1)
    for i, colours in enumerate(rgb, start=2):
        tile = nearest_upscale(colours.transpose(2, 0, 1), 128)
        fig.add_trace(go.Image(z=tile, hoverinfo="skip"), row=1, col=i)
    square_image_axes(fig, len(rgb) + 1)
    fig.update_annotations(font=dict(size=11))
    fig.update_layout(
        height=max(140, 1000 // (len(rgb) + 1)) + 40, margin=dict(l=4, r=4, t=30, b=4)
    )
    return fig
