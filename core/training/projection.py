"""One layer's 2-D PCA at every checkpoint, aligned frame to frame so that points move.

Each checkpoint's PCA has arbitrary signs and order of components, so plotted one after the
other the cloud jumps and flips (TensorBoard's projector shows steps this way). Here each frame
is rotated (or reflected) onto the next by orthogonal Procrustes, chained back from the final
checkpoint, whose frame is its plain PCA: the last frame matches what the Projections page
shows, and between frames only what the network changed moves. Each frame is scaled to unit
root-mean-square radius first (the initial weights' cloud is often tiny).

What can go wrong: a layer that is constant on every sample at some checkpoint (dead ReLUs at
init) gives an all-zero frame, which stays at the origin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from core.analysis import Batch, register
from core.projections.report_card import default_layer, pca_scores
from core.training.checkpoints import CheckpointCapture, State, capture_checkpoints, dynamics_layers


@dataclass(frozen=True)
class AlignedOptions:
    """Options of :func:`aligned_projection`."""

    layer: str = ""  # "": the last layer before the logits


@dataclass(frozen=True)
class AlignedProjection:
    """The same samples' 2-D coordinates at every checkpoint, aligned.

    Attributes:
        layer: the layer projected.
        frames: ``[T, N, 2]`` float16 (3 significant digits: plenty for a plot, half the
            bytes to store), each frame of unit RMS radius.
        explained: ``[T]`` share of the variance the two components hold at each checkpoint.
    """

    layer: str
    frames: np.ndarray
    explained: np.ndarray


def procrustes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The orthogonal ``R [D, D]`` minimising ``||a R - b||_F`` (``a, b [N, D]``), as
    ``scipy.linalg.orthogonal_procrustes`` computes it: ``U V^T`` of the SVD of ``a^T b``."""
    u, _, vt = np.linalg.svd(a.astype(np.float64).T @ b.astype(np.float64))
    return u @ vt


def unit_rms(x: np.ndarray) -> np.ndarray:
    """``x [N, D]`` centred and scaled to unit root-mean-square row norm (zeros stay zeros)."""
    x = x - x.mean(axis=0)
    rms = float(np.sqrt((x**2).sum(axis=1).mean()))
    return x / rms if rms > 0 else x


def chain_align(frames: Sequence[np.ndarray]) -> np.ndarray:
    """``[T, N, D]``: each frame rotated onto the next aligned one, the last left as it is."""
    out = [np.asarray(frames[-1], np.float64)]
    for frame in reversed(frames[:-1]):
        frame = np.asarray(frame, np.float64)
        out.append(frame @ procrustes(frame, out[-1]))
    return np.stack(out[::-1]).astype(np.float32)


def _pca2(x: np.ndarray) -> tuple[np.ndarray, float]:
    scores = pca_scores(x, 2)
    total = float(((x - x.mean(axis=0)) ** 2).sum())
    explained = float((scores.astype(np.float64) ** 2).sum() / total) if total > 0 else 0.0
    padded = np.zeros((len(x), 2), np.float32)
    padded[:, : scores.shape[1]] = scores
    return unit_rms(padded), explained


@register(
    "training.aligned_projection",
    family="training",
    title="Aligned projection over training",
    options=AlignedOptions,
)
def aligned_projection(
    model: nn.Module,
    batch: Batch,
    options: AlignedOptions,
    *,
    checkpoints: Sequence[State] = (),
    captured: CheckpointCapture | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AlignedProjection:
    """PCA of one layer at each checkpoint, Procrustes-chained (see the module);
    ``captured``: the batch's capture at ``checkpoints``, if already made (and has the layer).

    Raises:
        ValueError: an unknown layer.
    """
    ladder = dynamics_layers(model, batch.images.shape[1:])
    layer = options.layer or default_layer(ladder)
    if captured is None or layer not in captured.layers:
        captured = capture_checkpoints(model, batch, checkpoints, [layer], progress)
    pcs = [_pca2(step[layer]) for step in captured.features]
    frames = chain_align([p[0] for p in pcs])
    explained = np.array([p[1] for p in pcs], np.float32)
    return AlignedProjection(layer, frames.astype(np.float16), explained)
