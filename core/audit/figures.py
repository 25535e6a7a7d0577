"""Figures of the audit page and the audit report (plotly; no torch, no streamlit here, so
``python -m core.audit`` draws the report's charts with the same functions as the page).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from core.audit.concepts import ConceptTest
from core.audit.slices import Slices
from core.models.evaluation import Predictions

BAD, GOOD, RANDOM = "#d62728", "#1f77b4", "#9e9e9e"


def _error(low: np.ndarray, high: np.ndarray, value: np.ndarray) -> dict:
    return dict(type="data", array=high - value, arrayminus=value - low, thickness=1.2, width=3)


def slice_chart(slices: Slices, names: Sequence[str], limit: int = 20) -> go.Figure:
    """Accuracy of the ``limit`` worst slices with 95 % intervals and counts, worst on top;
    red where the whole interval lies below the overall accuracy (dashed line)."""
    k = min(limit, len(names))
    acc, low, high = slices.accuracy[:k], slices.low[:k], slices.high[:k]
    labels = [f"{names[i]} (n = {slices.count[i]:,})" for i in range(k)]
    colours = [BAD if b else GOOD for b in slices.below_overall[:k]]
    fig = go.Figure(
        go.Bar(
            x=acc,
            y=labels,
            orientation="h",
            marker_color=colours,
            error_x=_error(low, high, acc),
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        )
    )
    fig.add_vline(slices.overall, line_dash="dash", line_color="#444")
    fig.update_layout(
        height=120 + 22 * k,
        margin=dict(l=10, r=10, t=30, b=30),
        title=f"Worst slices (overall {slices.overall:.1%}, n = {slices.n:,})",
        xaxis=dict(title="accuracy (95 % CI)", range=[0, 1.02], tickformat=".0%"),
        yaxis=dict(autorange="reversed"),
    )
    return fig


def concept_chart(test: ConceptTest, concept: str, class_name: str) -> go.Figure:
    """TCAV score per layer for one class: the concept's (mean ± sd over its random
    counterparts) beside random CAVs', each layer marked significant (*) or "n.s."."""
    layers = list(test.layers)
    mean, sd = test.mean, test.scores.std(axis=1)
    rmean, rsd = test.random_mean, test.random_scores.std(axis=1)
    marks = [
        f"* p = {p:.2g}" if s else "n.s."
        for p, s in zip(test.p_values, test.significant, strict=True)
    ]
    fig = go.Figure(
        [
            go.Bar(
                name=concept,
                x=layers,
                y=mean,
                error_y=dict(type="data", array=sd),
                marker_color=[BAD if s else GOOD for s in test.significant],
                text=marks,
                textposition="outside",
            ),
            go.Bar(
                name="random",
                x=layers,
                y=rmean,
                error_y=dict(type="data", array=rsd),
                marker_color=RANDOM,
            ),
        ]
    )
    fig.update_layout(
        barmode="group",
        height=320,
        margin=dict(l=10, r=10, t=40, b=30),
        title=f"{concept} → {class_name}: TCAV score per layer ({test.method}, "
        f"{test.scores.shape[1]} random sets, n = {test.n_inputs} images)",
        yaxis=dict(title="TCAV score (mean ± sd)", range=[0, 1.15]),
        legend=dict(orientation="h", y=-0.2),
    )
    return fig


def accuracy_chart(rows: Sequence[tuple[str, Predictions]]) -> go.Figure:
    """Accuracy of each set of images with its 95 % interval (aligned vs independent)."""
    acc = np.array([p.accuracy for _, p in rows])
    ci = np.array([p.accuracy_interval for _, p in rows]).reshape(-1, 2)
    fig = go.Figure(
        go.Bar(
            x=[f"{name} (n = {p.n:,})" for name, p in rows],
            y=acc,
            error_y=_error(ci[:, 0], ci[:, 1], acc),
            marker_color=GOOD,
            text=[f"{a:.1%}" for a in acc],
            textposition="inside",
        )
    )
    fig.update_layout(
        height=300,
        margin=dict(l=10, r=10, t=30, b=30),
        title="Test accuracy (95 % Wilson interval)",
        yaxis=dict(range=[0, 1.02], tickformat=".0%"),
    )
    return fig
