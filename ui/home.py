"""Figures for the home page: training curves, a sample grid, a confusion matrix."""

from __future__ import annotations

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui.figures import to_rgb_uint8


def training_curves(history: list[dict[str, float]]) -> go.Figure:
    """Loss and accuracy per epoch, train and validation."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"))
    epochs = [h["epoch"] for h in history]
    for col, metric in ((1, "loss"), (2, "accuracy")):
        for split, colour in (("train", "#94a3b8"), ("val", "#4f46e5")):
            fig.add_trace(
                go.Scatter(
                    x=epochs,
                    y=[h[f"{split}_{metric}"] for h in history],
                    name="train" if split == "train" else "validation",
                    line=dict(color=colour, width=2.5),
                    mode="lines+markers",
                    showlegend=col == 1,
                    legendgroup=split,
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    fig.update_layout(
        height=300,
        margin=dict(l=10, r=10, t=50, b=10),
        legend=dict(orientation="h", x=0.5, xanchor="center", y=1.22),
    )
    return fig


def sample_grid(
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    class_names: tuple[str, ...],
    columns: int = 8,
) -> go.Figure:
    """Images ``[N, C, H, W]`` in a grid, titled with label and prediction (red when wrong)."""
    rgb = np.stack([to_rgb_uint8(img) for img in images])
    fig = px.imshow(rgb, facet_col=0, facet_col_wrap=columns, facet_col_spacing=0.01,
                    facet_row_spacing=0.08)  # fmt: skip
    rows = int(np.ceil(len(images) / columns))
    for annotation in fig.layout.annotations:
        i = int(annotation.text.split("=")[1])
        ok = labels[i] == predicted[i]
        truth, guess = class_names[labels[i]], class_names[predicted[i]]
        annotation.text = truth if ok else f"{truth} → <b>{guess}</b>"
        annotation.font = dict(size=11, color="#334155" if ok else "#dc2626")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=100 * rows + 10, margin=dict(l=0, r=0, t=22, b=0))
    return fig


def confusion_figure(matrix: np.ndarray, class_names: tuple[str, ...]) -> go.Figure:
    """A ``[K, K]`` confusion matrix: rows true, columns predicted, counts in the cells."""
    names = list(class_names)
    fig = px.imshow(
        matrix,
        x=names,
        y=names,
        text_auto=True,
        color_continuous_scale="Blues",
        labels=dict(x="predicted", y="true", color="samples"),
        aspect="auto",
    )
    fig.update_layout(height=120 + 32 * len(names), margin=dict(l=10, r=10, t=10, b=10))
    fig.update_coloraxes(showscale=False)
    return fig
