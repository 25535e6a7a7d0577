"""Figures of the Training page: curves with a checkpoint marker, layer x checkpoint heatmaps,
the aligned projection as an animation (play and slider run in the browser), filter mosaics.

Inputs are numpy arrays and plain lists; no torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from ui.figures.home import training_curves
from ui.figures.projections import CELL_PX, category_colours

MARKER = "#e11d48"


def curves_figure(
    history: list[dict[str, float]],
    epochs: Sequence[float],
    held_out_accuracy: np.ndarray | None,
    marker: float,
) -> go.Figure:
    """The run's per-epoch curves, held-out accuracy at every checkpoint (``[T]`` at fractional
    ``epochs``), and a vertical line at the chosen checkpoint's epoch ``marker``."""
    fig = training_curves(history)
    if held_out_accuracy is not None:
        fig.add_trace(
            go.Scatter(
                x=list(epochs), y=held_out_accuracy, name="held-out, every checkpoint",
                mode="lines+markers", line=dict(color="#0f766e", dash="dot"),
                xaxis="x2", yaxis="y2",
            )
        )  # fmt: skip
    for axis in ("x", "x2"):
        fig.add_vline(x=marker, line=dict(color=MARKER, width=2), xref=axis)
    fig.update_xaxes(dtick=None, rangemode="tozero")
    return fig


def grid_heatmap(
    values: np.ndarray,
    layers: Sequence[str],
    checkpoints: Sequence[str],
    marker: int,
    *,
    zmin: float = 0.0,
    zmax: float = 1.0,
    colour_title: str = "",
    fmt: str = ".2f",
) -> go.Figure:
    """``values [L, T]`` as a heatmap, shallow layers on top, the chosen column outlined."""
    fig = go.Figure(
        go.Heatmap(
            z=values, x=list(checkpoints), y=list(layers), zmin=zmin, zmax=zmax,
            colorscale="Viridis", texttemplate=f"%{{z:{fmt}}}", textfont=dict(size=10),
            colorbar=dict(title=dict(text=colour_title, side="right"), thickness=12),
            hovertemplate="%{y} at %{x}: %{z:.3f}<extra></extra>",
        )
    )  # fmt: skip
    fig.add_shape(
        type="rect", x0=marker - 0.5, x1=marker + 0.5, y0=-0.5, y1=len(layers) - 0.5,
        line=dict(color=MARKER, width=3),
    )  # fmt: skip
    fig.update_layout(
        height=CELL_PX * len(layers) + 110,
        margin=dict(l=10, r=10, t=10, b=10),
        yaxis=dict(autorange="reversed", type="category"),
        xaxis=dict(type="category", title="checkpoint"),
    )
    return fig


def aligned_animation(
    frames: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    checkpoints: Sequence[str],
    start: int,
) -> dict:
    """``frames [T, N, 2]`` as an animated scatter coloured by class: play and a slider over
    the checkpoints, run in the browser; opens at checkpoint ``start``.

    A plain figure dict (plotly's validation of T frames x K traces costs more than a scrub may).
    """
    colours = category_colours(class_names)
    lim = float(np.abs(frames).max()) * 1.05 or 1.0
    members = [labels == k for k in range(len(class_names))]

    def traces(t: int) -> list[dict]:
        xy = frames[t].astype(np.float32)
        return [
            dict(type="scatter", x=xy[m, 0].tolist(), y=xy[m, 1].tolist(), mode="markers",
                 name=name, marker=dict(size=5, color=colours[k], opacity=0.8))
            for k, (name, m) in enumerate(zip(class_names, members, strict=True))
        ]  # fmt: skip

    steps = [
        dict(method="animate", label=label,
             args=[[label], dict(mode="immediate", frame=dict(duration=0, redraw=False))])
        for label in checkpoints
    ]  # fmt: skip
    play = dict(frame=dict(duration=600, redraw=False), transition=dict(duration=400),
                fromcurrent=True)  # fmt: skip
    return dict(
        data=traces(start),
        frames=[dict(data=traces(t), name=label) for t, label in enumerate(checkpoints)],
        layout=dict(
            height=520,
            margin=dict(l=10, r=10, t=10, b=10),
            xaxis=dict(range=[-lim, lim], visible=False),
            yaxis=dict(range=[-lim, lim], visible=False, scaleanchor="x"),
            legend=dict(orientation="h", y=1.06),
            updatemenus=[dict(
                type="buttons", x=0, y=-0.02, xanchor="left", yanchor="top", direction="left",
                buttons=[dict(label="▶ Play", method="animate", args=[None, play]),
                         dict(label="❚❚", method="animate",
                              args=[[None], dict(mode="immediate", frame=dict(duration=0))])],
            )],
            sliders=[dict(active=start, steps=steps, x=0.12, len=0.88, y=-0.02,
                          currentvalue=dict(prefix="checkpoint: "))],
        ),
    )  # fmt: skip


def probe_gap_figure(
    layers: Sequence[str], train: np.ndarray, held_out: np.ndarray, checkpoint: str
) -> go.Figure:
    """Per layer, label-probe accuracy on training vs held-out samples at one checkpoint."""
    fig = go.Figure()
    for name, values, colour in (("training samples (labels trained on)", train, "#f59e0b"),
                                 ("held-out samples", held_out, "#4f46e5")):  # fmt: skip
        fig.add_trace(go.Scatter(x=list(layers), y=values, name=name, mode="lines+markers",
                                 line=dict(color=colour, width=2.5)))  # fmt: skip
    fig.update_layout(
        height=320, margin=dict(l=10, r=10, t=40, b=10), title=f"Label probe at {checkpoint}",
        yaxis=dict(title="probe accuracy", tickformat=".0%", range=[0, 1.02]),
        legend=dict(orientation="h", y=1.15),
    )  # fmt: skip
    return fig


def transfer_figure(
    layers: Sequence[str], cka: np.ndarray, probe_source: np.ndarray, probe_tuned: np.ndarray
) -> go.Figure:
    """Per layer: CKA source vs fine-tuned, and the new label's probe on each model."""
    fig = go.Figure()
    lines = (("CKA source vs fine-tuned", cka, "#0f766e", "solid"),
             ("label probe · source", probe_source, "#94a3b8", "dot"),
             ("label probe · fine-tuned", probe_tuned, "#4f46e5", "dot"))  # fmt: skip
    for name, values, colour, dash in lines:
        fig.add_trace(go.Scatter(x=list(layers), y=values, name=name, mode="lines+markers",
                                 line=dict(color=colour, width=2.5, dash=dash)))  # fmt: skip
    fig.update_layout(
        height=340, margin=dict(l=10, r=10, t=30, b=10), yaxis=dict(range=[0, 1.02]),
        legend=dict(orientation="h", y=1.15),
    )  # fmt: skip
    return fig


def change_figure(params: Sequence[str], change: np.ndarray) -> go.Figure:
    """``||ΔW|| / ||W||`` per weight tensor, in the model's order."""
    fig = go.Figure(go.Bar(x=list(params), y=change, marker_color="#f59e0b",
                           hovertemplate="%{x}: %{y:.3f}<extra></extra>"))  # fmt: skip
    fig.update_layout(
        height=300, margin=dict(l=10, r=10, t=10, b=10), yaxis=dict(title="‖ΔW‖ / ‖W‖")
    )
    return fig
