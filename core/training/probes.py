"""Linear-probe accuracy of the label and of each known factor, per layer and checkpoint.

When does a layer come to hold the class, or the colour? A logistic-regression probe
(:func:`core.projections.probes.probe_scores`) on each layer's pooled features at each
checkpoint answers it; the same grid on training samples (with the labels trained on) and on
held-out ones shows where a network memorises: on a label-noise run, the layers whose training
probe beats the held-out one.

What can go wrong: a target with a class of one sample cannot be split (``ValueError``); on
few samples the accuracies are noisy (``std`` says how much).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from core.analysis import Batch, register
from core.projections.probes import probe_scores
from core.training.checkpoints import State, capture_checkpoints

LABEL = "label"
"""The target name of the class label in :attr:`ProbeGrid.targets`."""


@dataclass(frozen=True)
class ProbeGridOptions:
    """Options of :func:`probe_grid`."""

    n_splits: int = 2  # stratified train/test splits per probe (the error bar)
    factors: bool = True  # probe each dataset factor too, not only the label
    seed: int = 0  # the splits' and the solver's seed


@dataclass(frozen=True)
class ProbeGrid:
    """Held-out linear-probe accuracy per target, layer and checkpoint.

    Attributes:
        layers: ``[L]`` layer names, shallow to deep.
        targets: ``[P]`` ``"label"`` then the factors' names.
        accuracy: ``[P, L, T]`` mean accuracy over splits.
        std: ``[P, L, T]`` its standard deviation over splits.
        chance: ``[P]`` accuracy of always guessing the most frequent value.
        n: samples probed (each split tests a quarter of them).
    """

    layers: tuple[str, ...]
    targets: tuple[str, ...]
    accuracy: np.ndarray
    std: np.ndarray
    chance: np.ndarray
    n: int


@register(
    "training.probe_grid",
    family="training",
    title="Probe accuracy over training",
    options=ProbeGridOptions,
)
def probe_grid(
    model: nn.Module,
    batch: Batch,
    options: ProbeGridOptions,
    *,
    checkpoints: Sequence[State] = (),
    progress: Callable[[int, int], None] | None = None,
) -> ProbeGrid:
    """Linear-probe accuracy of the label (and each factor) per layer and checkpoint.

    Progress counts the captures, then the probes, as one sequence.
    """
    targets = {LABEL: batch.labels}
    if options.factors:
        targets.update({k: np.asarray(v) for k, v in batch.factors.items()})
    n_ckpt = max(1, len(checkpoints))
    captured = capture_checkpoints(model, batch, checkpoints)
    shape = (len(targets), len(captured.layers), len(captured.features))
    total = n_ckpt + shape[0] * shape[1] * shape[2]
    accuracy, std = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    chance = np.zeros(len(targets), np.float32)
    done = n_ckpt
    for p, y in enumerate(targets.values()):
        for l_idx, layer in enumerate(captured.layers):
            for t, step in enumerate(captured.features):
                linear, _ = probe_scores(
                    step[layer], y, n_splits=options.n_splits, seed=options.seed
                )
                accuracy[p, l_idx, t], std[p, l_idx, t], chance[p] = (
                    linear.mean,
                    linear.std,
                    linear.chance,
                )
                done += 1
                if progress is not None:
                    progress(done, total)
    return ProbeGrid(captured.layers, tuple(targets), accuracy, std, chance, len(batch))
