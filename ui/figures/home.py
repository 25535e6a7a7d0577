"""Figures and copy for the home page: training curves (per epoch, and live per step), a sample
grid, a confusion matrix, and the "start here" tour through the pages."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from ui.figures.common import to_rgb_uint8

GRID_SAMPLES = 16
"""Samples in the overview's grid: two rows of :func:`sample_grid`'s eight columns."""
TITLE_CHARS = 11
"""Class names longer than this are shortened (with "…") in the sample grid's titles."""
PREFERRED_ATTENTION_RUN = "vit-shapes"
"""The shipped transformer: what the tour's attention stop opens for a run without attention."""


@dataclass(frozen=True)
class TourStop:
    """One page of the "start here" path: where it links, and what to look at there."""

    page: str
    label: str
    icon: str
    text: str
    run: str


def attention_run_for(run: str, attention_runs: list[str]) -> str | None:
    """The run the attention page should open: ``run`` if it has attention, else the shipped
    transformer, else any run with attention (``None``: there is none)."""
    if run in attention_runs:
        return run
    if PREFERRED_ATTENTION_RUN in attention_runs:
        return PREFERRED_ATTENTION_RUN
    return attention_runs[0] if attention_runs else None


def tour(run: str, attention_runs: list[str]) -> list[TourStop]:
    """The pages in the order a first visit should take them, each for ``run``.

    Args:
        run: the selected run.
        attention_runs: the runs whose model has attention; the attention stop opens ``run``
            if it is one of them, another one if not, and is left out if there is none.
    """
    attention_run = attention_run_for(run, attention_runs)
    stops = [
        TourStop(
            "pages/feature_maps.py",
            "Feature maps",
            ":material/grid_view:",
            "What each channel of a layer responds to in one image: edges and colours in the "
            "first block, parts of shapes deeper down.",
            run,
        ),
        TourStop(
            "pages/projections.py",
            "Projections",
            ":material/scatter_plot:",
            "How the classes pull apart from layer to layer; the layer report card shows where "
            "the label becomes readable and the nuisance factors fade.",
            run,
        ),
    ]
    if attention_run is not None:
        other = "" if attention_run == run else f" (opens {attention_run}: this run has none)"
        stops.append(
            TourStop(
                "pages/attention.py",
                "Attention",
                ":material/visibility:",
                "Where a transformer's heads look: pick an image patch and see what each head "
                f"attends to{other}.",
                attention_run,
            )
        )
    stops.append(
        TourStop(
            "pages/attributions.py",
            "Attributions",
            ":material/my_location:",
            "Which pixels a prediction rests on, by several methods side by side, and whether "
            "they survive the sanity check.",
            run,
        )
    )
    return stops


def short_name(name: str, limit: int = TITLE_CHARS) -> str:
    """``name`` cut to ``limit`` characters, ending in "…" when cut."""
    return name if len(name) <= limit else name[: limit - 1].rstrip() + "…"


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

    One image trace with text annotations: fast to build and to send, whatever N is. Titles
    take two lines (a mistake's prediction goes on the second), long class names are shortened
    (the full names show on hover), and the title band and gaps grow with the image, so titles
    of neighbours never overlap.
    """
    n, _, h, w = images.shape
    rows = int(np.ceil(n / columns))
    gap, band = max(1, w // 6), max(2, round(h * 0.55))
    cell_h, cell_w = h + band + gap, w + gap
    mosaic = np.full((rows * cell_h, columns * cell_w, 3), 255, np.uint8)
    titles = []
    for i in range(n):
        r, c = divmod(i, columns)
        top, left = r * cell_h + band, c * cell_w
        mosaic[top : top + h, left : left + w] = to_rgb_uint8(images[i])
        titles.append(_title(left + w / 2, top, class_names[labels[i]], class_names[predicted[i]]))
    return go.Figure(
        go.Image(z=mosaic, hoverinfo="skip"),
        layout=dict(
            annotations=titles,
            height=125 * rows + 10,
            margin=dict(l=0, r=0, t=0, b=0),
            xaxis=dict(visible=False),
            yaxis=dict(visible=False, scaleanchor="x"),
        ),
    )


def _title(x: float, bottom: float, truth: str, guess: str) -> dict:
    """A sample's title annotation: its class, and below it ``→ prediction`` when wrong."""
    ok = truth == guess
    text = short_name(truth) if ok else f"{short_name(truth)}<br>→ <b>{short_name(guess)}</b>"
    return dict(
        x=x,
        y=bottom - 0.5,
        yanchor="bottom",
        text=text,
        hovertext=truth if ok else f"true {truth}, predicted {guess}",
        showarrow=False,
        font=dict(size=10, color="#334155" if ok else "#dc2626"),
    )


def live_curves(
    step_losses: tuple[tuple[int, float], ...],
    steps_per_epoch: int,
    history: list[dict[str, float]],
    epochs: int,
) -> go.Figure:
    """The training curves while training runs: loss every few steps, accuracy per epoch.

    The loss panel has a point from the first step on (x in epochs, fractional); validation
    loss and both accuracies join as each epoch ends. Both x axes span the whole run, so the
    curve also shows how far training has come.
    """
    fig = training_curves(history)
    fig.add_trace(
        go.Scatter(
            x=[step / steps_per_epoch for step, _ in step_losses],
            y=[loss for _, loss in step_losses],
            name="train (every few steps)",
            line=dict(color="#f59e0b", width=1.5),
            mode="lines",
            xaxis="x",
            yaxis="y",
        )
    )
    span = dict(range=[0, epochs + 0.05], dtick=max(1, epochs // 10))
    fig.update_layout(xaxis=span, xaxis2=span, yaxis2=dict(range=[0, 1.02]))
    if not history:
        fig.add_annotation(
            text="accuracy: after the first epoch",
            xref="x2 domain",
            yref="y2 domain",
            x=0.5,
            y=0.5,
            showarrow=False,
            font=dict(color="#64748b"),
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
