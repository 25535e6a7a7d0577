"""Linear CKA of each layer at each checkpoint with the same layer at the end of training.

Raghu et al. (2017, SVCCA) found that networks converge bottom-up: early layers reach their
final representation first. This grid shows it for a run: row = layer (shallow to deep), column
= checkpoint, value = linear CKA (:mod:`core.projections.similarity`) between the layer's pooled
features at that checkpoint and at the last one, on the same samples. The last column is 1.

What can go wrong: with a single checkpoint (no ``checkpoints`` given) the grid is one column
of ones; at the initial weights a ReLU layer can be constant on every sample (CKA 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from core.analysis import Batch, register
from core.projections.similarity import centred_gram, cka_from_grams
from core.training.checkpoints import CheckpointCapture, State, capture_checkpoints

SETTLED = 0.9
"""A layer has *settled* from the first checkpoint after which its CKA to the end stays above
this."""


@dataclass(frozen=True)
class CkaOptions:
    """Options of :func:`cka_to_final` (none yet: every layer of the report card's ladder)."""


@dataclass(frozen=True)
class CkaGrid:
    """Linear CKA to the final checkpoint, per layer and checkpoint.

    Attributes:
        layers: ``[L]`` layer names, shallow to deep.
        cka: ``[L, T]`` CKA of layer ``l`` at checkpoint ``t`` with itself at checkpoint ``T-1``.
        settled: ``[L]`` index of the checkpoint from which the layer stays above
            :data:`SETTLED` (``T-1`` at the latest).
        n: samples compared.
    """

    layers: tuple[str, ...]
    cka: np.ndarray
    settled: np.ndarray
    n: int


def settled_at(cka: np.ndarray, threshold: float = SETTLED) -> np.ndarray:
    """``[L]`` first checkpoint index from which each row of ``cka [L, T]`` stays >= threshold."""
    below = cka < threshold
    last_below = np.where(below.any(axis=1), below.shape[1] - 1 - np.argmax(below[:, ::-1], 1), -1)
    return (last_below + 1).astype(np.int64)


@register(
    "training.cka_to_final",
    family="training",
    title="CKA to the final checkpoint",
    options=CkaOptions,
)
def cka_to_final(
    model: nn.Module,
    batch: Batch,
    options: CkaOptions,
    *,
    checkpoints: Sequence[State] = (),
    captured: CheckpointCapture | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CkaGrid:
    """The layer x checkpoint grid of linear CKA to the last checkpoint (see the module);
    ``captured``: the batch's capture at ``checkpoints``, if already made."""
    if captured is None:
        captured = capture_checkpoints(model, batch, checkpoints, progress=progress)
    final = {n: centred_gram(x) for n, x in captured.features[-1].items()}
    cka = np.array(
        [
            [cka_from_grams(centred_gram(step[n]), final[n]) for step in captured.features]
            for n in captured.layers
        ],
        np.float32,
    ).reshape(len(captured.layers), len(captured.features))
    return CkaGrid(captured.layers, cka, settled_at(cka), len(batch))


def settling_text(grid: CkaGrid, epochs: list[str]) -> str:
    """One sentence: where each layer settles (CKA to the end stays >= :data:`SETTLED`),
    shallow to deep, from ``grid`` and its checkpoints' labels ``epochs``."""
    parts = [f"{layer} at {epochs[t]}" for layer, t in zip(grid.layers, grid.settled, strict=True)]
    order = "bottom-up" if np.all(np.diff(grid.settled) >= 0) else "not strictly bottom-up"
    return (
        f"Settled (linear CKA with the end ≥ {SETTLED} from then on, n = {grid.n}), "
        f"{order}: " + ", ".join(parts) + "."
    )
