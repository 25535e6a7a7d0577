"""Figures of the projections page: point maps, probe-vs-depth, CKA heatmaps, selections.

Inputs are numpy arrays; no torch. Point maps use WebGL (``Scattergl``) so 50,000 points draw
quickly; each point carries its position in the sample as ``customdata`` so a box or lasso
selection maps back to samples whatever trace it fell in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import qualitative, unlabel_rgb
from plotly.subplots import make_subplots

from core.data.datasets import named_colours
from core.projections.density import DensityMap
from ui.figures.common import COLOUR_BAR

PALETTE = qualitative.Plotly + qualitative.Set2 + qualitative.Pastel1
TRAINED, RANDOM, CHANCE = "#1f6feb", "#9aa4b2", "#c2c8d0"
CELL_PX = 26
"""Height of one row of a report-card heatmap, in pixels."""


def category_colours(categories: Sequence[str], colours: Sequence[str] | None = None) -> list[str]:
    """One colour per category: ``colours`` if given, else the categories' own colours when
    they are named colours (``red`` drawn red, see :func:`core.data.named_colours`), else the
    qualitative :data:`PALETTE`.
    """
    own = list(colours or named_colours(categories))
    if len(own) == len(categories):
        return own
    return [PALETTE[code % len(PALETTE)] for code in range(len(categories))]


def _marker_size(n: int) -> float:
    return float(np.clip(9 - 1.4 * np.log10(max(n, 1)), 2.5, 7))


def point_map(
    coords: np.ndarray,
    colour: np.ndarray,
    categories: Sequence[str] | None,
    hover: Sequence[str],
    selected: np.ndarray,
    title: str = "",
    colour_name: str = "",
    height: int = 560,
    colours: Sequence[str] | None = None,
) -> go.Figure:
    """A 2-D or 3-D scatter of ``coords [N, 2|3]`` coloured by ``colour [N]``.

    Args:
        coords: point coordinates.
        colour: category codes (``categories`` given) or continuous values.
        categories: names of the codes; ``None`` for a continuous colour (e.g. confidence).
        hover: one text per point.
        selected: ``[N]`` bool; when any is set, the rest are dimmed and these outlined.
        title: figure title.
        colour_name: legend / colour bar title.
        height: pixels.
        colours: a CSS colour per category (e.g. ``Factor.colours``); default: see
            :func:`category_colours`.
    """
    n, dims = coords.shape
    positions = np.arange(n)
    hover = np.asarray(hover, dtype=object)
    dim = 0.18 if selected.any() else 0.85
    size = _marker_size(n)
    traces: list[go.BaseTraceType] = []

    def trace(mask: np.ndarray, name: str, marker: dict, showlegend: bool = True):
        common = dict(
            mode="markers",
            name=name,
            customdata=positions[mask],
            text=hover[mask],
            hovertemplate="%{text}<extra></extra>",
            marker=marker,
            showlegend=showlegend,
        )
        if dims == 3:
            x, y, z = coords[mask].T
            return go.Scatter3d(x=x, y=y, z=z, **common)
        return go.Scattergl(x=coords[mask, 0], y=coords[mask, 1], **common)

    if categories is None:
        traces.append(
            trace(
                np.ones(n, bool),
                colour_name,
                dict(
                    color=colour,
                    colorscale="Viridis",
                    size=size,
                    opacity=dim,
                    colorbar=dict(title=colour_name, thickness=12),
                ),
                showlegend=False,
            )
        )
    else:
        palette = category_colours(categories, colours)
        for code, name in enumerate(categories):
            mask = colour == code
            if mask.any():
                marker = dict(color=palette[code], size=size, opacity=dim)
                traces.append(trace(mask, str(name), marker))
    if selected.any():
        ring = dict(size=size + 4, color="rgba(0,0,0,0)", line=dict(color="#111", width=1.5))
        traces.append(trace(selected, "selected", ring))
    fig = go.Figure(traces)
    fig.update_layout(
        title=dict(text=title, font=dict(size=14)) if title else None,
        height=height,
        margin=dict(l=8, r=8, t=40 if title else 8, b=8),
        legend=dict(title=colour_name, itemsizing="constant"),
        dragmode="lasso" if dims == 2 else "orbit",
        plot_bgcolor="white",
    )
    if dims == 2:
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False, scaleanchor="x")
    else:
        axis = dict(visible=False)
        fig.update_layout(scene=dict(xaxis=axis, yaxis=axis, zaxis=axis))
    return fig


def depth_strip(
    coords: np.ndarray,
    layers: Sequence[str],
    colour: np.ndarray,
    categories: Sequence[str],
    columns: int = 4,
    colours: Sequence[str] | None = None,
) -> go.Figure:
    """Small multiples: ``coords [L, N, 2]``, one panel per layer, coloured by category.

    ``colours``: a CSS colour per category; default: see :func:`category_colours`.
    """
    palette = category_colours(categories, colours)
    rows = -(-len(layers) // columns)
    fig = make_subplots(
        rows, columns, subplot_titles=list(layers), horizontal_spacing=0.02, vertical_spacing=0.06
    )
    size = max(2.0, _marker_size(coords.shape[1]) - 2)
    for i, layer_coords in enumerate(coords):
        for code, name in enumerate(categories):
            mask = colour == code
            fig.add_trace(
                go.Scattergl(
                    x=layer_coords[mask, 0],
                    y=layer_coords[mask, 1],
                    mode="markers",
                    name=str(name),
                    legendgroup=str(name),
                    showlegend=i == 0,
                    marker=dict(color=palette[code], size=size, opacity=0.8),
                    hoverinfo="skip",
                ),
                row=i // columns + 1,
                col=i % columns + 1,
            )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=11)
    fig.update_layout(
        height=230 * rows + 40,
        margin=dict(l=8, r=8, t=30, b=8),
        plot_bgcolor="white",
        legend=dict(orientation="h", y=-0.02, itemsizing="constant"),
    )
    return fig


def probe_vs_depth(
    layers: Sequence[str],
    trained: np.ndarray,
    random: np.ndarray | None,
    chance: float,
    target: str,
    knn: np.ndarray | None = None,
    height: int = 420,
) -> go.Figure:
    """Probe accuracy against depth: trained vs random init, with error bars over splits.

    Args:
        layers: layer names, shallow to deep (``L``).
        trained: ``[L, S]`` linear-probe accuracies of the trained model.
        random: ``[L, S]`` the same for random weights, or ``None``.
        chance: majority-class accuracy (a dashed line).
        target: what is probed (``label``, ``colour``, ...).
        knn: ``[L, S]`` k-NN accuracies of the trained model, or ``None``.
        height: pixels.
    """
    x = list(layers)
    fig = go.Figure()

    def line(values: np.ndarray, name: str, colour: str, dash: str = "solid") -> None:
        fig.add_trace(
            go.Scatter(
                x=x,
                y=values.mean(1),
                error_y=dict(type="data", array=values.std(1), thickness=1.2, width=3),
                mode="lines+markers",
                name=name,
                line=dict(color=colour, width=3 if dash == "solid" else 2, dash=dash),
                marker=dict(size=7),
                hovertemplate="%{x}: %{y:.1%}<extra>" + name + "</extra>",
            )
        )

    line(trained, "trained · linear probe", TRAINED)
    if knn is not None:
        line(knn, "trained · k-NN", TRAINED, dash="dot")
    if random is not None:
        line(random, "random init · linear probe", RANDOM)
    fig.add_hline(
        y=chance,
        line=dict(color=CHANCE, dash="dash"),
        annotation_text=f"chance {chance:.0%}",
        annotation_position="bottom right",
    )
    fig.update_layout(
        title=dict(text=f"How linearly readable is the <b>{target}</b>, layer by layer?"),
        height=height,
        margin=dict(l=8, r=8, t=48, b=8),
        yaxis=dict(title="held-out accuracy", tickformat=".0%", range=[0, 1.05]),
        xaxis=dict(title="layer (input → output)", tickangle=-35),
        legend=dict(orientation="h", y=1.0, yanchor="bottom", x=1, xanchor="right"),
        plot_bgcolor="white",
    )
    fig.update_yaxes(gridcolor="#eee")
    return fig


def _unit_bar(title: str, ticks: Sequence[str], plot_px: int) -> dict:
    """A colour bar over ``[0, 1]`` with three ticks, as long as the plot but ≤ 220 px."""
    return dict(
        COLOUR_BAR,
        title=dict(text=title, side="right"),
        tickvals=[0, 0.5, 1],
        ticktext=list(ticks),
        lenmode="pixels",
        len=max(60, min(plot_px, 220)),
    )


def factor_heatmap(
    layers: Sequence[str], targets: Sequence[str], accuracy: np.ndarray, chance: np.ndarray
) -> go.Figure:
    """Probe accuracy above chance, ``accuracy [L, T]``: which layer holds which factor.

    Layers run down (input at the top, labels horizontal), targets across the top; the height
    grows with the number of layers, so one target (a dataset without factors) is a column.
    """
    lift = (accuracy - chance) / np.clip(1 - chance, 1e-6, None)
    plot_px = CELL_PX * max(len(layers), 3)
    fig = go.Figure(
        go.Heatmap(
            z=lift,
            x=list(targets),
            y=list(layers),
            text=np.vectorize(lambda v: f"{v:.0%}")(accuracy),
            texttemplate="%{text}",
            textfont=dict(size=11),
            colorscale="Blues",
            zmin=0,
            zmax=1,
            xgap=1,
            ygap=1,
            colorbar=_unit_bar("above chance", ["chance", "50%", "perfect"], plot_px),
            hovertemplate="%{x} at %{y}: %{text}<extra></extra>",
        )
    )
    fig.update_layout(height=plot_px + 70, margin=dict(l=8, r=8, t=8, b=8), plot_bgcolor="white")
    fig.update_xaxes(side="top", automargin=True, tickfont=dict(size=11))
    fig.update_yaxes(autorange="reversed", automargin=True, tickfont=dict(size=11))
    return fig


def cka_heatmap(
    matrix: np.ndarray, rows: Sequence[str], columns: Sequence[str], x_title: str, y_title: str
) -> go.Figure:
    """Linear CKA between layers: ``matrix [len(rows), len(columns)]`` in ``[0, 1]``.

    Square cells; the height follows the number of rows, x labels rotated (and the margin
    grown to fit them).
    """
    cell = float(np.clip(260 / max(len(columns), 1), 14, 40))
    plot_px = int(cell * max(len(rows), 3))
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=list(columns),
            y=list(rows),
            colorscale="Viridis",
            zmin=0,
            zmax=1,
            colorbar=_unit_bar("CKA", ["0", "0.5", "1"], plot_px),
            hovertemplate="%{y} vs %{x}: %{z:.2f}<extra></extra>",
        )
    )
    longest = max((len(str(c)) for c in columns), default=4)
    fig.update_layout(
        height=plot_px + 60 + int(6.5 * longest * 0.7), margin=dict(l=8, r=8, t=8, b=8)
    )
    fig.update_xaxes(
        title_text=x_title,
        tickangle=-45,
        automargin=True,
        tickfont=dict(size=11),
        constrain="domain",
    )
    fig.update_yaxes(
        title_text=y_title,
        autorange="reversed",
        scaleanchor="x",
        constrain="domain",
        automargin=True,
        tickfont=dict(size=11),
    )
    return fig


def label_histogram(
    labels: np.ndarray, predicted: np.ndarray, class_names: Sequence[str]
) -> go.Figure:
    """Counts per class in a selection: true labels and predictions side by side."""
    k = len(class_names)
    fig = go.Figure(
        [
            go.Bar(
                x=list(class_names),
                y=np.bincount(labels, minlength=k),
                name="true label",
                marker_color=TRAINED,
            ),
            go.Bar(
                x=list(class_names),
                y=np.bincount(predicted, minlength=k),
                name="predicted",
                marker_color=RANDOM,
            ),
        ]
    )
    fig.update_layout(
        barmode="group",
        height=260,
        margin=dict(l=8, r=8, t=8, b=8),
        legend=dict(orientation="h", y=1.02, yanchor="bottom"),
        yaxis_title="samples",
    )
    return fig


def hex_colour(colour: str) -> str:
    """A plotly colour (``#rrggbb`` or ``rgb(r, g, b)``) as ``#rrggbb`` (datashader's form)."""
    if colour.startswith("#"):
        return colour
    r, g, b = (round(float(c)) for c in unlabel_rgb(colour))
    return f"#{r:02x}{g:02x}{b:02x}"


def density_figure(
    dmap: DensityMap, categories: Sequence[str], colours: Sequence[str], title: str = ""
) -> go.Figure:
    """A server-rendered density image of a large map, with one clickable marker per occupied
    cell (``customdata``: the cell's position in ``dmap.cell_xy``) and a legend of classes."""
    (x0, x1), (y0, y1) = dmap.x_range, dmap.y_range
    fig = go.Figure()
    for code, name in enumerate(categories):
        marker = dict(color=colours[code], size=9, symbol="square")
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=str(name), marker=marker))
    text = [
        f"{count:,} points here · mostly {categories[label]} · select to see the nearest"
        for count, label in zip(dmap.cell_count, dmap.cell_label, strict=True)
    ]
    fig.add_trace(
        go.Scattergl(
            x=dmap.cell_xy[:, 0],
            y=dmap.cell_xy[:, 1],
            mode="markers",
            name="cells",
            showlegend=False,
            customdata=np.arange(len(dmap.cell_xy)),
            text=text,
            hovertemplate="%{text}<extra></extra>",
            marker=dict(size=7, color="rgba(0,0,0,0.02)"),
        )
    )
    fig.add_layout_image(
        source=Image.fromarray(dmap.image),
        xref="x", yref="y", x=x0, y=y1, sizex=x1 - x0, sizey=y1 - y0,
        sizing="stretch", layer="below",
    )  # fmt: skip
    fig.update_xaxes(visible=False, range=[x0, x1])
    fig.update_yaxes(visible=False, range=[y0, y1])
    fig.update_layout(
        title=dict(text=title, font=dict(size=14)) if title else None,
        height=560,
        margin=dict(l=8, r=8, t=40 if title else 8, b=8),
        plot_bgcolor="white",
        clickmode="event+select",
        dragmode="select",
        legend=dict(title="true label", itemsizing="constant"),
    )
    return fig
