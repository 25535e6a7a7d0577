"""Maps too big for a browser: a density image rendered here, with cells to click through.

A WebGL scatter holds about 50,000 points before a browser slows down (and a million points
are ~40 MB of JSON). Above :data:`DENSITY_THRESHOLD` a map is drawn as an image instead:
datashader counts the points of each class per pixel and blends the classes' colours, with
the brightness histogram-equalised and each pixel spread to its neighbours so sparse
regions stay visible. For clicking, the map is
also cut into a :data:`GRID` x :data:`GRID` grid; each occupied cell is one marker at its
points' mean position, and :func:`nearest_points` gives the samples nearest to it.

Everything is counted: the image shows every point, none is dropped or sampled. What can go
wrong: datashader compiles its numba kernels on first use (about 3 s, once per process);
coordinates that are all equal get a unit-wide range rather than a zero-wide one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DENSITY_THRESHOLD = 50_000
"""Maps of more points than this are drawn as a density image."""
GRID = 64
"""Click-through cells per axis."""


@dataclass(frozen=True)
class DensityMap:
    """A rendered density image of a 2-D map and its click-through cells.

    Attributes:
        image: ``[H, W, 4]`` uint8 RGBA; row 0 is the top (largest y).
        x_range: ``(x0, x1)`` the image spans.
        y_range: ``(y0, y1)`` the image spans.
        cell_xy: ``[M, 2]`` mean position of the points of each occupied cell.
        cell_count: ``[M]`` points per cell.
        cell_label: ``[M]`` the most frequent label in each cell.
        n: points drawn (all of them).
    """

    image: np.ndarray
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    cell_xy: np.ndarray
    cell_count: np.ndarray
    cell_label: np.ndarray
    n: int


def _range(values: np.ndarray) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    pad = max(hi - lo, 1.0) * 0.02
    return lo - pad, hi + pad


def density_map(
    coords: np.ndarray,
    labels: np.ndarray,
    colours: Sequence[str],
    width: int = 900,
    height: int = 640,
) -> DensityMap:
    """Renders ``coords [N, 2]`` coloured by ``labels [N]`` (codes into ``colours``, hex).

    Returns:
        A :class:`DensityMap` of ``height x width`` pixels.
    """
    import datashader as ds
    import datashader.transfer_functions as tf
    import pandas as pd

    labels = np.asarray(labels)
    x_range, y_range = _range(coords[:, 0]), _range(coords[:, 1])
    frame = pd.DataFrame(
        {
            "x": coords[:, 0],
            "y": coords[:, 1],
            "label": pd.Categorical.from_codes(labels, categories=range(len(colours))),
        }
    )
    canvas = ds.Canvas(plot_width=width, plot_height=height, x_range=x_range, y_range=y_range)
    counts = canvas.points(frame, "x", "y", ds.count_cat("label"))
    shaded = tf.spread(tf.shade(counts, color_key=list(colours), how="eq_hist", min_alpha=90), px=1)
    image = np.asarray(shaded.to_pil().convert("RGBA"))
    cx = np.clip(((coords[:, 0] - x_range[0]) / (x_range[1] - x_range[0]) * GRID), 0, GRID - 1)
    cy = np.clip(((coords[:, 1] - y_range[0]) / (y_range[1] - y_range[0]) * GRID), 0, GRID - 1)
    cell = cy.astype(np.int64) * GRID + cx.astype(np.int64)
    count = np.bincount(cell, minlength=GRID * GRID)
    occupied = np.flatnonzero(count)
    mean_x = np.bincount(cell, coords[:, 0], GRID * GRID)[occupied] / count[occupied]
    mean_y = np.bincount(cell, coords[:, 1], GRID * GRID)[occupied] / count[occupied]
    n_labels = len(colours)
    by_label = np.bincount(cell * n_labels + labels, minlength=GRID * GRID * n_labels)
    majority = by_label.reshape(GRID * GRID, n_labels)[occupied].argmax(1)
    return DensityMap(
        image,
        x_range,
        y_range,
        np.stack([mean_x, mean_y], 1).astype(np.float32),
        count[occupied],
        majority,
        len(coords),
    )


def nearest_points(coords: np.ndarray, points: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` rows of ``coords [N, 2]`` nearest to each of ``points [P, 2]``, merged.

    Returns:
        Unique row indices, nearest to the first point first.
    """
    picked: list[int] = []
    for point in np.atleast_2d(points):
        d2 = ((coords - point) ** 2).sum(1)
        near = np.argpartition(d2, min(k, len(d2) - 1))[:k]
        picked.extend(near[np.argsort(d2[near], kind="stable")].tolist())
    return np.array(list(dict.fromkeys(picked)), dtype=np.int64)
