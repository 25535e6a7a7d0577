"""How much of the label, or of a known factor, a layer holds: linear probes and k-NN.

A linear probe (Alain & Bengio 2016) is a logistic regression trained on a layer's features
to predict a target; its held-out accuracy says how linearly readable the target is there.
k-NN accuracy says whether samples that share a target are neighbours. Each score is the
mean over ``n_splits`` stratified random train/test splits, with their standard deviation as
the error bar. Features are standardised inside each split (fitted on its train part).

What can go wrong: a target with a class of fewer than 2 samples cannot be split
(``ValueError``); wide layers should be reduced first (see :func:`core.features.layer_features`),
or the logistic regression gets slow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core.projection import limited_threads


@dataclass(frozen=True)
class ProbeScore:
    """Held-out accuracy of one probe over several splits.

    Attributes:
        scores: ``[n_splits]`` test accuracies.
        chance: accuracy of always predicting the most frequent class.
    """

    scores: np.ndarray
    chance: float

    @property
    def mean(self) -> float:
        """Mean accuracy over splits."""
        return float(self.scores.mean())

    @property
    def std(self) -> float:
        """Standard deviation over splits (the error bar)."""
        return float(self.scores.std())


def _splits(targets: np.ndarray, n_splits: int, test_size: float, seed: int) -> list:
    _, counts = np.unique(targets, return_counts=True)
    if len(counts) < 2:
        raise ValueError("A probe needs at least 2 classes among the samples; there is one.")
    if counts.min() < 2:
        raise ValueError("Every class needs at least 2 samples to be split into train and test.")
    return list(
        StratifiedShuffleSplit(n_splits, test_size=test_size, random_state=seed).split(
            np.zeros(len(targets)), targets
        )
    )


def probe_scores(
    features: np.ndarray,
    targets: np.ndarray,
    *,
    n_splits: int = 3,
    test_size: float = 0.25,
    seed: int = 0,
    k: int = 5,
) -> tuple[ProbeScore, ProbeScore]:
    """Linear-probe and k-NN accuracy of ``features [N, D]`` for ``targets [N]``.

    The linear probe is ``StandardScaler`` + ``LogisticRegression(max_iter=500)``; k-NN is
    ``StandardScaler`` + ``KNeighborsClassifier(k)``; both on the same splits.

    Args:
        features: ``[N, D]`` one row per sample.
        targets: ``[N]`` integer classes.
        n_splits: stratified random splits (the error bar is over these).
        test_size: held-out fraction of each split.
        seed: seed of the splits and the solver.
        k: neighbours for k-NN.

    Returns:
        ``(linear probe, k-NN)`` scores.
    """
    x = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    y = np.asarray(targets)
    chance = float(np.bincount(y).max() / len(y))
    linear, knn = [], []
    with limited_threads():
        for train, test in _splits(y, n_splits, test_size, seed):
            probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
            linear.append(probe.fit(x[train], y[train]).score(x[test], y[test]))
            nearest = make_pipeline(StandardScaler(), KNeighborsClassifier(min(k, len(train))))
            knn.append(nearest.fit(x[train], y[train]).score(x[test], y[test]))
    return ProbeScore(np.array(linear), chance), ProbeScore(np.array(knn), chance)
