"""Linear CKA: how alike two layers' representations of the same samples are.

Centred kernel alignment (Kornblith et al. 2019) with a linear kernel compares two feature
matrices ``X [N, D1]`` and ``Y [N, D2]`` of the same ``N`` samples:
``CKA = <K, L> / (||K|| ||L||)`` with ``K = Xc Xc^T``, ``L = Yc Yc^T`` (``c``: centred columns).
It is 1 for a representation and itself, and unchanged by orthogonal transforms and isotropic
scaling of either side, so it compares layers of different widths, and layers of two runs.

Each layer is summarised once by its centred Gram matrix ``[N, N]`` (cost ``N^2 D``), after
which every pair costs ``N^2``. Keep ``N`` to a few thousand: memory is ``4 N^2`` bytes a layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.threads import limited_threads


def centred_gram(x: np.ndarray) -> np.ndarray:
    """The doubly centred linear Gram matrix ``[N, N]`` of ``x [N, ...]`` (flattened)."""
    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    x = x - x.mean(axis=0, dtype=np.float64).astype(np.float32)
    with limited_threads():
        return (x @ x.T).astype(np.float32)


def cka_from_grams(k: np.ndarray, l_gram: np.ndarray) -> float:
    """Linear CKA of two centred Gram matrices (see :func:`centred_gram`)."""
    k64, l64 = k.astype(np.float64).ravel(), l_gram.astype(np.float64).ravel()
    denominator = np.linalg.norm(k64) * np.linalg.norm(l64)
    return float(k64 @ l64 / denominator) if denominator > 0 else 0.0


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of ``x [N, ...]`` and ``y [N, ...]`` (the same N samples, same order).

    Raises:
        ValueError: different sample counts.
    """
    if len(x) != len(y):
        raise ValueError(f"CKA compares the same samples: got {len(x)} and {len(y)} rows.")
    return cka_from_grams(centred_gram(x), centred_gram(y))


def cka_matrix(
    grams_a: Sequence[np.ndarray], grams_b: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """CKA between every pair of layers: ``[La, Lb]`` (``[La, La]`` when ``grams_b`` is None).

    Args:
        grams_a: centred Gram matrices ``[N, N]`` of one run's layers.
        grams_b: the same samples' Gram matrices for another run's layers.
    """
    symmetric = grams_b is None
    grams_b = grams_a if grams_b is None else grams_b
    out = np.empty((len(grams_a), len(grams_b)), np.float32)
    for i, k in enumerate(grams_a):
        for j, l_gram in enumerate(grams_b):
            if symmetric and j < i:
                out[i, j] = out[j, i]
            else:
                out[i, j] = cka_from_grams(k, l_gram)
    return out
