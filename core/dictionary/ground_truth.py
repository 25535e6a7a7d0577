"""Ground truth for features: how well each one detects each value of each factor of ``shapes``.

For every feature (or channel) and every value of every recorded factor (colour = red, texture
= stripes, position = top-left, ... and the class), the AUC of the feature's per-image peak as
a detector of "the image has this value": 1 a perfect detector, 0.5 chance. Comparing the best
feature per value with the best single channel of the same layer says whether the dictionary
found more selective units than the network's own basis (mean best-AUC, and how many values
have a detector with AUC >= :data:`DETECTOR_AUC`).

AUCs are computed by ranks (Mann-Whitney U, ties averaged), all features at once; they match
``sklearn.metrics.roc_auc_score``. What can go wrong: a value no image (or every image) has
gets NaN, and is left out of the means and counts; a dataset without factors has only classes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata
from torch import nn

from core.analysis import Batch, register
from core.dictionary.features import FeatureStatsOptions, feature_stats
from core.feature_maps.top_examples import ChannelStatsOptions, channel_stats

DETECTOR_AUC = 0.95
"""An AUC at least this high counts as a detector."""


def auc_matrix(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """AUC of every score column against every boolean target column.

    Args:
        scores: ``[N, F]`` per-image scores.
        positive: ``[N, V]`` bool targets.

    Returns:
        ``[F, V]`` AUCs (NaN where a target has no positive or no negative).
    """
    ranks = rankdata(scores, axis=0)  # [N, F], ties averaged
    pos = positive.astype(np.float64)
    n_pos = pos.sum(0)
    n_neg = len(pos) - n_pos
    rank_sums = ranks.T @ pos  # [F, V]
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sums - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


@dataclass(frozen=True)
class GroundTruth:
    """Features against channels as detectors of ``V`` factor values.

    Attributes:
        factors: ``[V]`` the factor of each value (``"class"`` for the labels).
        codes: ``[V]`` int the value's code within its factor.
        feature_auc: ``[F, V]`` AUC of each feature per value.
        channel_auc: ``[C, V]`` AUC of each channel per value.
    """

    factors: tuple[str, ...]
    codes: np.ndarray
    feature_auc: np.ndarray
    channel_auc: np.ndarray

    def best(self, which: str = "feature") -> tuple[np.ndarray, np.ndarray]:
        """Per value: the best feature (or channel) and its AUC, ``([V], [V])``."""
        auc = np.nan_to_num(self.feature_auc if which == "feature" else self.channel_auc, nan=-1)
        best = auc.argmax(0)
        return best, np.where(auc.max(0) < 0, np.nan, auc.max(0))

    def summary(self) -> dict[str, float]:
        """Mean best-AUC and detector counts of features and channels (defined values only)."""
        out: dict[str, float] = {}
        for which in ("feature", "channel"):
            _, auc = self.best(which)
            defined = auc[np.isfinite(auc)]
            out[f"{which}_mean_best_auc"] = float(defined.mean()) if len(defined) else np.nan
            out[f"{which}_detectors"] = int((defined >= DETECTOR_AUC).sum())
        out["values"] = int(np.isfinite(self.best("feature")[1]).sum())
        return out

    def most_associated(self) -> tuple[np.ndarray, np.ndarray]:
        """Per feature: the value it detects best and that AUC, ``([F], [F])``."""
        auc = np.nan_to_num(self.feature_auc, nan=-1)
        return auc.argmax(1), auc.max(1)


def verdict(summary: dict[str, float]) -> str:
    """Whether the SAE's features are more selective detectors than single channels, in words."""
    f, c = summary["feature_mean_best_auc"], summary["channel_mean_best_auc"]
    fd, cd, n = summary["feature_detectors"], summary["channel_detectors"], summary["values"]
    better = "more" if f > c + 0.005 else "less" if f < c - 0.005 else "about as"
    return (
        f"Over {n} factor values and classes, the best SAE feature per value reaches a mean AUC "
        f"of {f:.3f} against {c:.3f} for the best single channel: the features are {better} "
        f"selective. {fd} values have a feature with AUC ≥ {DETECTOR_AUC}, {cd} have a channel."
    )


def targets(
    labels: np.ndarray, factors: Mapping[str, np.ndarray], n_classes: int
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """The class and every factor as one-hot targets: ``(factor names [V], codes [V], [N, V])``."""
    names, codes, columns = [], [], []
    for factor, values in {"class": np.asarray(labels), **dict(factors)}.items():
        count = n_classes if factor == "class" else int(np.max(values, initial=-1)) + 1
        for code in range(count):
            names.append(factor)
            codes.append(code)
            columns.append(np.asarray(values) == code)
    if not columns:
        return (), np.zeros(0, np.int64), np.zeros((len(labels), 0), bool)
    return tuple(names), np.asarray(codes, np.int64), np.stack(columns, axis=1)


def compare(
    feature_peaks: np.ndarray,
    channel_peaks: np.ndarray,
    labels: np.ndarray,
    factors: Mapping[str, np.ndarray],
    class_names: Sequence[str],
) -> GroundTruth:
    """:class:`GroundTruth` from per-image peaks of features ``[N, F]`` and channels ``[N, C]``."""
    names, codes, positive = targets(labels, factors, len(class_names))
    return GroundTruth(
        names, codes, auc_matrix(feature_peaks, positive), auc_matrix(channel_peaks, positive)
    )


@register(
    "dictionary.ground_truth",
    family="dictionary",
    title="SAE features against channels as detectors of the known factors",
    options=FeatureStatsOptions,
)
def ground_truth(
    model: nn.Module,
    batch: Batch,
    options: FeatureStatsOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> GroundTruth:
    """Measures the SAE's features and the layer's channels on ``batch`` and compares them.

    The page computes the same from the results it has already (:func:`compare`).
    """
    stats = feature_stats(model, batch, options, progress=progress)
    channels = channel_stats(model, batch, ChannelStatsOptions(layer=stats.stats.layer))
    return compare(
        stats.stats.maxima, channels.maxima, batch.labels, batch.factors, batch.class_names
    )
