"""Figures for the home page: training curves, a sample grid, a confusion matrix."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ui.figures import to_rgb_uint8


def training_curves(history: list[dict[str, float]]) -> go.Figure:
    """Loss and accuracy per epoch, train and validation, side by side."""
    epochs = [h["epoch"] for h in history]
    fig = go.Figure()
    for axis, metric in (("", "loss"), ("2", "accuracy")):
        for split, colour in (("train", "#94a3b8"), ("val", "#4f46e5")):
            fig.add_trace(
                go.Scatter(
                    x=epochs,
                    y=[h[f"{split}_{metric}"] for h in history],
                    name="train" if split == "train" else "validation",
                    line=dict(color=colour, width=2.5),
                    mode="lines+markers",
                    showlegend=axis == "",
                    legendgroup=split,
                    xaxis=f"x{axis}",
                    yaxis=f"y{axis}",
                )
            )
    fig.update_layout(
        height=300,
        margin=dict(l=10, r=10, t=50, b=10),
        legend=dict(orientation="h", x=0.5, xanchor="center", y=1.22),
        xaxis=dict(domain=[0, 0.45], title="epoch", dtick=1),
        xaxis2=dict(domain=[0.55, 1], title="epoch", dtick=1),
        yaxis=dict(title="loss"),
        yaxis2=dict(title="accuracy", tickformat=".0%", anchor="x2"),
    )
    return fig


def sample_grid(
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    class_names: tuple[str, ...],
    columns: int = 8,
) -> go.Figure:
    """Images ``[N, C, H, W]`` as one mosaic, each titled with its label (red: true → predicted).

    One image trace with text annotations: fast to build and to send, whatever N is.
    """
    n, _, h, w = images.shape
    rows = int(np.ceil(n / columns))
    gap, title = max(1, w // 8), max(6, h // 3)
    cell_h, cell_w = h + title + gap, w + gap
    mosaic = np.full((rows * cell_h, columns * cell_w, 3), 255, np.uint8)
    titles = []
    for i in range(n):
        r, c = divmod(i, columns)
        top, left = r * cell_h + title, c * cell_w
        mosaic[top : top + h, left : left + w] = to_rgb_uint8(images[i])
        ok = labels[i] == predicted[i]
        truth, guess = class_names[labels[i]], class_names[predicted[i]]
        titles.append(
            dict(
                x=left + w / 2,
                y=top - 1,
                yanchor="bottom",
                text=truth if ok else f"{truth} → <b>{guess}</b>",
                showarrow=False,
                font=dict(size=11, color="#334155" if ok else "#dc2626"),
            )
        )
    fig = go.Figure(
        go.Image(z=mosaic, hoverinfo="skip"),
        layout=dict(
            annotations=titles,
            height=110 * rows + 10,
            margin=dict(l=0, r=0, t=0, b=0),
            xaxis=dict(visible=False),
            yaxis=dict(visible=False, scaleanchor="x"),
        ),
    )
    return fig


def confusion_figure(matrix: np.ndarray, class_names: tuple[str, ...]) -> go.Figure:
    """A ``[K, K]`` confusion matrix: rows true, columns predicted, counts in the cells."""
    names = list(class_names)
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=names,
            y=names,
            colorscale="Blues",
            showscale=False,
            texttemplate="%{z}",
            hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>",
        )
    )
    fig.update_xaxes(title="predicted", side="bottom")
    fig.update_yaxes(title="true", autorange="reversed")
    fig.update_layout(height=120 + 32 * len(names), margin=dict(l=10, r=10, t=10, b=10))
    return fig
