"""What fine-tuning changed: per layer, CKA between the source model and the fine-tuned one on
the new dataset's samples, their label probes, and each weight's relative change.

Neyshabur et al. (2020) and Kornblith et al. (2019) report that early layers change least when
a network is fine-tuned: CKA near 1 and a small ``||W_tuned - W_source|| / ||W_source||`` at
the bottom, falling with depth. This analysis measures both for a run trained with
``TrainConfig.init_from``.

What can go wrong: without a ``source`` model the fine-tuned model is compared with itself
(CKA 1, no change); a head of a different width (new classes) has no weight change to report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import nn

from core.analysis import Batch, register
from core.projections.probes import _splits
from core.projections.similarity import linear_cka
from core.training.checkpoints import capture_checkpoints, dynamics_layers
from core.training.probes import ridge_predict


@dataclass(frozen=True)
class TransferOptions:
    """Options of :func:`transfer_report`."""

    seed: int = 0  # the probe's split


@dataclass(frozen=True)
class TransferReport:
    """Source vs fine-tuned model, layer by layer, on the same (new) samples.

    Attributes:
        layers: ``[L]`` layer names, shallow to deep.
        cka: ``[L]`` linear CKA of the two models' pooled features.
        probe_source: ``[L]`` ridge-probe accuracy of the new labels on the source's features.
        probe_tuned: ``[L]`` the same on the fine-tuned model's features.
        params: ``[P]`` parameter names present in both with the same shape.
        relative_change: ``[P]`` ``||W_tuned - W_source|| / ||W_source||``.
        n: samples.
    """

    layers: tuple[str, ...]
    cka: np.ndarray
    probe_source: np.ndarray
    probe_tuned: np.ndarray
    params: tuple[str, ...]
    relative_change: np.ndarray
    n: int


def _probe(
    features: dict[str, np.ndarray], layers: tuple[str, ...], y: np.ndarray, seed: int
) -> np.ndarray:
    ((train, test),) = _splits(y, 1, 0.25, seed)
    return np.array(
        [(ridge_predict(features[n][train], [y[train]], features[n][test])[0] == y[test]).mean()
         for n in layers], np.float32,
    )  # fmt: skip


@register(
    "training.transfer", family="training", title="What fine-tuning changed",
    options=TransferOptions,
)  # fmt: skip
def transfer_report(
    model: nn.Module,
    batch: Batch,
    options: TransferOptions,
    *,
    source: nn.Module | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TransferReport:
    """Compares the fine-tuned ``model`` with its ``source`` (see the module)."""
    source = model if source is None else source
    layers = dynamics_layers(model, batch.images.shape[1:])
    tuned = capture_checkpoints(model, batch, (), layers)
    before = capture_checkpoints(source, batch, (), layers)
    a, b = before.features[0], tuned.features[0]
    cka = np.array([linear_cka(a[n], b[n]) for n in layers], np.float32)
    y = np.asarray(batch.labels)
    old, new = source.state_dict(), model.state_dict()
    params = tuple(
        k for k, v in new.items()
        if k in old and old[k].shape == v.shape and v.is_floating_point() and v.dim() > 0
    )  # fmt: skip
    change = np.array(
        [float((new[k].float() - old[k].float()).norm() / old[k].float().norm().clamp_min(1e-12))
         for k in params], np.float32,
    )  # fmt: skip
    return TransferReport(
        tuple(layers), cka, _probe(a, tuple(layers), y, options.seed),
        _probe(b, tuple(layers), y, options.seed), params, change, len(batch),
    )  # fmt: skip
