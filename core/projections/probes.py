"""How much of the label, or of a known factor, a layer holds: linear probes and k-NN.

A linear probe (Alain & Bengio 2016) is a logistic regression trained on a layer's features
to predict a target; its held-out accuracy says how linearly readable the target is there.
k-NN accuracy says whether samples that share a target are neighbours. Each score is the
mean over ``n_splits`` stratified random train/test splits, with their standard deviation as
the error bar. Features are standardised inside each split (fitted on its train part).

Speed (the layer report card runs hundreds of these): the logistic regression is solved by
Newton's method with a Cholesky solve (scikit-learn's ``newton-cholesky``, the same L2-penalised
multinomial objective, converged to the same optimum as ``lbfgs`` in a handful of steps) when
its Hessian is small, ``lbfgs`` otherwise; k-NN is a direct distance computation in numpy
(the same neighbours and majority vote as ``KNeighborsClassifier``, ties to the lower class),
which avoids scikit-learn's per-fit overhead.

What can go wrong: a target with a class of fewer than 2 samples cannot be split
(``ValueError``); wide layers should be reduced first (see :func:`core.features.layer_features`),
or the logistic regression gets slow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.preprocessing import StandardScaler

from core.threads import limited_threads


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


NEWTON_MAX_UNKNOWNS = 4096
"""The linear probe uses Newton's method when ``(features + 1) * classes`` is at most this."""


def _linear_probe(n_features: int, n_classes: int, seed: int) -> LogisticRegression:
    if (n_features + 1) * n_classes <= NEWTON_MAX_UNKNOWNS:
        return LogisticRegression(solver="newton-cholesky", max_iter=100, random_state=seed)
    return LogisticRegression(max_iter=500, random_state=seed)


def knn_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, k: int = 5
) -> float:
    """Accuracy of a ``k``-nearest-neighbour vote (Euclidean, uniform weights, ties to the lower
    class), as ``KNeighborsClassifier(k)`` computes it, on rows already standardised."""
    k = min(k, len(train_x))
    a = np.asarray(test_x, np.float64)
    b = np.asarray(train_x, np.float64)
    distances = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :]
    nearest = np.argpartition(distances, k - 1, axis=1)[:, :k]
    labels = np.asarray(train_y)[nearest]
    n_classes = int(max(labels.max(), np.max(test_y))) + 1
    votes = np.zeros((len(a), n_classes), np.int64)
    np.add.at(votes, (np.arange(len(a))[:, None], labels), 1)
    return float((votes.argmax(1) == np.asarray(test_y)).mean())


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

    The linear probe is ``StandardScaler`` + ``LogisticRegression`` (L2, ``C=1``; see the
    module docstring for the solver); k-NN is ``StandardScaler`` + a ``k``-nearest-neighbour
    vote (:func:`knn_accuracy`); both on the same splits.

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
    n_classes = len(np.unique(y))
    linear, knn = [], []
    with limited_threads():
        for train, test in _splits(y, n_splits, test_size, seed):
            scaler = StandardScaler().fit(x[train])
            train_x, test_x = scaler.transform(x[train]), scaler.transform(x[test])
            probe = _linear_probe(x.shape[1], n_classes, seed)
            linear.append(probe.fit(train_x, y[train]).score(test_x, y[test]))
            knn.append(knn_accuracy(train_x, y[train], test_x, y[test], k))
    return ProbeScore(np.array(linear), chance), ProbeScore(np.array(knn), chance)
