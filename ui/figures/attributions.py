"""Figures of the attributions page (plotly). Inputs are numpy arrays; no torch here.

Methods differ in scale by orders of magnitude (a gradient vs. an occlusion score), so every map
is divided by its own 99th percentile of ``|value|`` and clipped to ``[-1, 1]``: one signed colour
scale for all (red: evidence for the target class, blue: against), without a few extreme pixels
washing out the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui.figures.common import DIVERGING, grey_rgb, square_image_axes

SCALE = dict(colorscale=DIVERGING, cmin=-1.0, cmax=1.0, cmid=0.0)


def normalised(heat: np.ndarray) -> np.ndarray:
    """``[..., H, W]`` map divided by its 99th percentile of ``|value|``, clipped to ``[-1, 1]``."""
    limit = float(np.percentile(np.abs(heat), 99)) or float(np.abs(heat).max()) or 1.0
    return np.clip(heat / limit, -1.0, 1.0)


def map_grid(
    image: np.ndarray,
    heats: Sequence[np.ndarray],
    titles: Sequence[str],
    columns: int = 4,
    cell_height: int = 210,
    opacity: float = 0.7,
) -> go.Figure:
    """Maps ``[H, W]`` over the greyed input ``[C, H, W]``, on one shared signed colour scale."""
    rows = max(1, -(-len(heats) // columns))
    fig = make_subplots(
        rows, columns, subplot_titles=list(titles), horizontal_spacing=0.02, vertical_spacing=0.1
    )
    grey = grey_rgb(image)
    for k, heat in enumerate(heats):
        row, col = divmod(k, columns)
        fig.add_trace(go.Image(z=grey, hoverinfo="skip"), row + 1, col + 1)
        fig.add_trace(
            go.Heatmap(
                z=normalised(heat),
                coloraxis="coloraxis",
                opacity=opacity,
                hovertemplate="x %{x}, y %{y}: %{z:.2f}<extra></extra>",
            ),
            row + 1,
            col + 1,
        )
    square_image_axes(fig, rows * columns)
    fig.update_annotations(font_size=13)
    fig.update_layout(
        coloraxis=dict(
            **SCALE,
            colorbar=dict(
                tickvals=[-1, 0, 1],
                ticktext=["against", "0", "for"],
                thickness=12,
                len=0.8,
            ),
        ),
        height=cell_height * rows + 40,
        margin=dict(l=4, r=4, t=40, b=4),
    )
    return fig


def units_bar(per_unit: np.ndarray, top: np.ndarray, unit_name: str = "channel") -> go.Figure:
    """The top units' attributions as horizontal bars, largest ``|value|`` on top."""
    values = per_unit[top]
    fig = go.Figure(
        go.Bar(
            x=values[::-1],
            y=[f"{unit_name} {u}" for u in top[::-1]],
            orientation="h",
            marker_color=np.where(values[::-1] >= 0, "#b2182b", "#2166ac"),
            hovertemplate="%{y}: %{x:.4g}<extra></extra>",
        )
    )
    fig.update_layout(
        height=28 * len(top) + 70,
        margin=dict(l=4, r=4, t=10, b=40),
        xaxis_title="share of the target's score (+ for, − against)",
    )
    return fig


def sanity_grid(
    heats: np.ndarray,
    methods: Sequence[str],
    steps: Sequence[str],
    cell_height: int = 120,
    verdicts: Sequence[str] | None = None,
) -> go.Figure:
    """``heats [S + 1, M, H, W]`` as a grid: one row per method, one column per step.

    ``verdicts [M]`` (``SanityCheck.verdicts``), when given, are appended to the row titles.
    """
    n_steps, n_methods = heats.shape[:2]
    titles = ["original" if s == "original" else f"… to {s}" for s in steps]
    rows = list(methods)
    if verdicts is not None:
        rows = [f"{m}: {v}" for m, v in zip(methods, verdicts, strict=True)]
    fig = make_subplots(
        n_methods,
        n_steps,
        column_titles=titles,
        row_titles=rows,
        horizontal_spacing=0.01,
        vertical_spacing=0.02,
    )
    for j in range(n_methods):
        for i in range(n_steps):
            fig.add_trace(
                go.Heatmap(
                    z=normalised(heats[i, j]),
                    coloraxis="coloraxis",
                    hovertemplate="%{z:.2f}<extra></extra>",
                ),
                j + 1,
                i + 1,
            )
    square_image_axes(fig, n_steps * n_methods)
    fig.update_annotations(font_size=11)
    fig.update_layout(
        coloraxis=dict(**SCALE, showscale=False),
        height=cell_height * n_methods + 60,
        margin=dict(l=4, r=90, t=50, b=4),
    )
    return fig


def correlation_figure(
    correlation: np.ndarray,
    methods: Sequence[str],
    steps: Sequence[str],
    *,
    threshold: float | None = None,
    verdicts: Sequence[str] | None = None,
    statistic: str = "similarity with the original map",
) -> go.Figure:
    """Similarity ``[S + 1, M]`` with the original map as layers are randomised.

    Args:
        correlation: ``[S + 1, M]`` similarity per step and method (``SanityCheck.spearman_abs``).
        methods: ``[M]`` names for the legend.
        steps: ``[S + 1]`` step labels.
        threshold: ``SanityCheck.threshold``; shades the failing zone (a map that ends there
            survived randomisation) and draws its edge dashed. Nothing is shaded without it.
        verdicts: ``[M]`` ``SanityCheck.verdicts``, appended to the legend entries.
        statistic: ``SanityCheck.statistic``, the y-axis title.
    """
    fig = go.Figure()
    for j, method in enumerate(methods):
        name = method if verdicts is None else f"{method}: {verdicts[j]}"
        fig.add_trace(
            go.Scatter(
                x=list(range(len(steps))), y=correlation[:, j], mode="lines+markers", name=name
            )
        )
    if threshold is not None:
        fig.add_hrect(y0=threshold, y1=1.05, fillcolor="#d62728", opacity=0.08, line_width=0)
        fig.add_hline(
            y=threshold,
            line=dict(color="#d62728", dash="dash", width=1),
            annotation_text=f"fails if the last point is ≥ {threshold:g}",
            annotation_position="top left",
            annotation_font_size=11,
        )
    fig.update_layout(
        height=320,
        margin=dict(l=4, r=4, t=10, b=4),
        xaxis=dict(
            tickvals=list(range(len(steps))), ticktext=list(steps), title="randomised down to"
        ),
        yaxis=dict(range=[-1.05, 1.05], title=statistic),
        legend=dict(orientation="h", y=1.12),
    )
    return fig


def curves_figure(
    fractions: np.ndarray,
    deletion: Mapping[str, np.ndarray],
    insertion: Mapping[str, np.ndarray],
    random: tuple[np.ndarray, np.ndarray] | None = None,
    random_auc: tuple[float, float] | None = None,
) -> go.Figure:
    """Deletion and insertion curves ``[S + 1]`` per method, side by side.

    Args:
        fractions: ``[S + 1]`` fraction of pixels removed or added.
        deletion, insertion: ``[S + 1]`` curve per method name.
        random: ``([S + 1], [S + 1])`` random-order deletion and insertion curves, drawn as a
            dashed grey baseline (``FaithfulnessCurves.random_deletion`` / ``random_insertion``,
            one row or their mean over samples).
        random_auc: ``(deletion, insertion)`` areas of ``random``, quoted in the legend
            (``random_deletion_auc`` / ``random_insertion_auc``, the same row or mean).
    """
    fig = make_subplots(
        1,
        2,
        subplot_titles=[
            "Deletion (lower area = more faithful)",
            "Insertion (higher area = more faithful)",
        ],
    )
    palette = [
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
        "#d62728",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#7f7f7f",
    ]
    for k, name in enumerate(deletion):
        colour = palette[k % len(palette)]
        for col, curves in ((1, deletion), (2, insertion)):
            fig.add_trace(
                go.Scatter(
                    x=fractions,
                    y=curves[name],
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    line=dict(color=colour),
                    hovertemplate=f"{name}: %{{y:.3f}} at %{{x:.0%}}<extra></extra>",
                ),
                1,
                col,
            )
    if random is not None:
        kinds = ("deletion", "insertion")
        for col, (curve, kind) in enumerate(zip(random, kinds, strict=True), start=1):
            area = "" if random_auc is None else f", {kind} AUC {random_auc[col - 1]:.3f}"
            fig.add_trace(
                go.Scatter(
                    x=fractions,
                    y=curve,
                    name=f"random order{area}",
                    legendgroup="random",
                    showlegend=random_auc is not None or col == 1,
                    line=dict(color="#999999", dash="dash"),
                    hovertemplate="random order: %{y:.3f} at %{x:.0%}<extra></extra>",
                ),
                1,
                col,
            )
    fig.update_xaxes(title="fraction of pixels", tickformat=".0%")
    fig.update_yaxes(title="target probability", range=[0, 1.02], col=1)
    fig.update_yaxes(range=[0, 1.02], col=2)
    fig.update_layout(
        height=340, margin=dict(l=4, r=4, t=40, b=4), legend=dict(orientation="h", y=-0.25)
    )
    return fig
