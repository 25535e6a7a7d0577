"""Every download's bytes: CSV, NPY and PNG, so each page offers its numbers the same way.

Functions here take arrays or rows and return the file's content (``bytes`` or ``str``), for
``st.download_button`` (pass a lambda to build it only when clicked). No Streamlit, no torch.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from ui.figures.attributions import normalised
from ui.figures.common import grey_rgb, to_rgb_uint8


def frame_csv(frame: pd.DataFrame) -> bytes:
    """A table as CSV bytes, without the index."""
    return frame.to_csv(index=False).encode()


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as the bytes of an ``.npy`` file, for a download button."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    """Rows of equal keys as CSV text, with a header."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def grid_csv(activation: np.ndarray) -> bytes:
    """``[C, H, W]`` as CSV rows ``channel,row,col,value``."""
    c, h, w = activation.shape
    index = np.indices((c, h, w)).reshape(3, -1).T
    buffer = io.StringIO()
    buffer.write("channel,row,col,value\n")
    np.savetxt(
        buffer,
        np.column_stack([index, activation.reshape(-1)]),
        fmt=["%d", "%d", "%d", "%.6g"],
        delimiter=",",
    )
    return buffer.getvalue().encode()


def maps_csv(heats: Mapping[str, np.ndarray]) -> str:
    """Long-format CSV of maps ``[H, W]``: ``method,y,x,value``."""
    lines = ["method,y,x,value"]
    for name, heat in heats.items():
        ys, xs = np.indices(heat.shape)
        lines += [
            f"{name},{y},{x},{v:.6g}"
            for y, x, v in zip(ys.ravel(), xs.ravel(), heat.ravel(), strict=True)
        ]
    return "\n".join(lines) + "\n"


def png_bytes(rgb: np.ndarray) -> bytes:
    """An ``[H, W, 3]`` uint8 image as PNG bytes."""
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def grid_png(image: np.ndarray, heats: Sequence[np.ndarray], titles: Sequence[str]) -> bytes:
    """The input and the maps side by side as a PNG, composed server-side (titles above)."""
    cmap = matplotlib.colormaps["RdBu_r"]
    side = 160
    tiles = [Image.fromarray(to_rgb_uint8(image)).resize((side, side), Image.NEAREST)]
    grey = grey_rgb(image).astype(np.float32) / 255
    for heat in heats:
        colour = cmap((normalised(heat) + 1) / 2)[..., :3]
        alpha = np.abs(normalised(heat))[..., None] * 0.8
        blend = (grey * (1 - alpha) + colour * alpha) * 255
        tiles.append(Image.fromarray(blend.round().astype(np.uint8)).resize((side, side)))
    canvas = Image.new("RGB", (len(tiles) * (side + 8) + 8, side + 36), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (tile, title) in enumerate(zip(tiles, ["input", *titles], strict=True)):
        x = 8 + k * (side + 8)
        canvas.paste(tile, (x, 28))
        draw.text((x, 8), title, fill="black")
    return png_bytes(np.asarray(canvas))


def long_csv(values: np.ndarray, axes: Sequence[tuple[str, Sequence[Any]]], value: str) -> str:
    """An array as long-format CSV: one row per cell, its label on each axis, then its value.

    Args:
        values: ``[len(labels_0), len(labels_1), ...]``.
        axes: ``(column name, labels)`` per axis of ``values``.
        value: the value column's name.
    """
    return csv_text(
        [
            {**{name: labels[i] for (name, labels), i in zip(axes, index, strict=True)},
             value: float(values[index])}
            for index in np.ndindex(values.shape)
        ]
    )  # fmt: skip


def head_statistics_csv(stats: Any) -> str:
    """``core.attention.statistics.HeadStatistics`` averaged over samples: a row per head."""
    return csv_text(
        [
            {"layer": layer, "module": module, "head": head,
             "mean_distance_px": float(stats.distance[:, layer, head].mean()),
             "entropy_bits": float(stats.entropy[:, layer, head].mean()),
             "extra_token_share": float(stats.extra_share[:, layer, head].mean())}
            for layer, module in enumerate(stats.layers)
            for head in range(stats.distance.shape[2])
        ]
    )  # fmt: skip
