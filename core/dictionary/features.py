"""An SAE's health and every feature's statistics, in one pass over a set of images.

Health (the numbers SAE papers report first): the fraction of the layer's variance the
reconstruction explains, the mean L0 (features active per token), the fraction of dead
features (never active on these images), the log-density histogram (how often each feature
fires, in log10), and the model's accuracy with the reconstruction spliced in at the layer
against without (Wilson intervals). Per feature, the same per-image summaries as channels get
(:class:`core.feature_maps.top_examples.ChannelStats`: max, argmax, mean over positions), so the
top-k code ranks features unchanged; plus co-firing counts and a histogram of activations.

What can go wrong: images of unknown class (label -1) are left out of the accuracies; a
feature that never fires has density 0 (shown at the histogram's left edge, not as -inf).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.analysis import Batch, Inputs, register
from core.device import model_device
from core.dictionary.sae import SAE
from core.dictionary.tokens import maps_of, splice
from core.dictionary.train import resolve_sae
from core.feature_maps.top_examples import ChannelStats
from core.models.evaluation import wilson_interval

HEALTH_INPUTS = Inputs(split="val")
"""The images the health panel and the feature pages are measured on."""
LOG_BINS = np.linspace(-4.0, 2.0, 31)
"""Edges of the per-feature histograms of log10 activation (values beyond go to the ends)."""


@dataclass(frozen=True)
class FeatureStatsOptions:
    """Which SAE :func:`feature_stats` measures."""

    run: str = ""  # the run the SAE belongs to ("" with sae "": a default SAE trained here)
    sae: str = ""  # the SAE's id (core.dictionary.store)
    batch_size: int = 256  # images per forward pass


@dataclass(frozen=True)
class FeatureStats:
    """An SAE measured on ``N`` images of ``T`` tokens each, ``F`` features, ``K`` classes.

    Attributes:
        stats: per image and feature: max, mean and argmax over the image's tokens
            (``maxima``/``means``/``peaks`` ``[N, F]``), as for channels.
        fire_counts: ``[F]`` tokens on which each feature is active.
        cofire: ``[F, F]`` tokens on which both features are active.
        histogram: ``[F, len(LOG_BINS) - 1]`` counts of log10 activation on active tokens.
        n_tokens: ``N * T``.
        fve: fraction of the layer's variance explained by the reconstruction.
        l0: mean number of active features per token.
        correct: images classified right without the SAE, with it spliced in (``(2,)`` int).
        n_labelled: images with a known class.
    """

    stats: ChannelStats
    fire_counts: np.ndarray
    cofire: np.ndarray
    histogram: np.ndarray
    n_tokens: int
    fve: float
    l0: float
    correct: np.ndarray
    n_labelled: int

    @property
    def density(self) -> np.ndarray:
        """``[F]`` fraction of tokens on which each feature is active."""
        return self.fire_counts / max(self.n_tokens, 1)

    @property
    def dead_fraction(self) -> float:
        """Fraction of features active on no token."""
        return float(np.mean(self.fire_counts == 0))

    @property
    def accuracy(self) -> tuple[float, float]:
        """Accuracy without and with the SAE spliced in (NaN for no labelled image)."""
        n = self.n_labelled
        return tuple(float(c / n) if n else float("nan") for c in self.correct)

    @property
    def intervals(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """95 % Wilson intervals of :attr:`accuracy`."""
        return tuple(wilson_interval(int(c), self.n_labelled) for c in self.correct)


def health_summary(stats: FeatureStats) -> str:
    """The health panel's verdict in words (thresholds: 90 % variance, 10 % dead, the
    accuracy intervals overlapping or not)."""
    plain, spliced = stats.accuracy
    (p_lo, p_hi), (s_lo, s_hi) = stats.intervals
    parts = [
        f"The reconstruction explains {stats.fve:.1%} of the layer's variance "
        + ("(good)" if stats.fve >= 0.9 else "(low: more steps, a larger k or more features)"),
        f"{stats.l0:.1f} features are active per token on average",
        f"{stats.dead_fraction:.1%} of the {len(stats.fire_counts)} features never fire "
        + (
            "(healthy)" if stats.dead_fraction <= 0.1 else "(many dead: fewer features, more steps)"
        ),
    ]
    if stats.n_labelled:
        overlap = s_hi >= p_lo and p_hi >= s_lo
        cost = plain - spliced
        parts.append(
            f"spliced in, the model's accuracy goes from {plain:.1%} to {spliced:.1%} "
            f"({cost * 100:+.1f} points; n = {stats.n_labelled}; the 95 % intervals "
            + ("overlap)" if overlap else "do not overlap: the SAE loses what the model uses)")
        )
    return "; ".join(parts) + "."


def log_density(density: np.ndarray) -> np.ndarray:
    """``[F]`` log10 firing densities, dead features at ``-inf`` replaced by -8 (plot floor)."""
    with np.errstate(divide="ignore"):
        return np.where(density > 0, np.log10(np.maximum(density, 1e-300)), -8.0)


@register(
    "dictionary.features",
    family="dictionary",
    title="SAE health and every feature's statistics",
    options=FeatureStatsOptions,
)
def feature_stats(
    model: nn.Module,
    batch: Batch,
    options: FeatureStatsOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> FeatureStats:
    """Runs ``batch`` through the model twice per image batch: plain, and with the SAE's
    reconstruction spliced in, while measuring the SAE on the layer's tokens.

    Raises:
        ValueError: no images, or an SAE that does not exist / does not fit the layer.
    """
    images, labels = batch.images, np.asarray(batch.labels)
    if len(images) == 0:
        raise ValueError("No images to measure the SAE on.")
    params, site = resolve_sae(model, batch, options.run, options.sae)
    device = model_device(model)
    sae = SAE.from_params(params).to(device)
    f, bins = params.d_sae, len(LOG_BINS) - 1
    fire = torch.zeros(f, dtype=torch.float64)
    cofire = torch.zeros(f, f, dtype=torch.float64)
    histogram = torch.zeros(f * bins, dtype=torch.float64)
    moments = torch.zeros(3, dtype=torch.float64)  # squared error, sum x^2, active count
    x_sum = torch.zeros(site.d_in, dtype=torch.float64)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    correct = np.zeros(2, dtype=np.int64)

    def measure(tokens: torch.Tensor) -> torch.Tensor:
        codes = sae.encode(tokens)
        x_hat = sae.decode(codes)
        active = (codes > 0).double().cpu()
        fire.add_(active.sum(0))
        cofire.add_(active.T @ active)
        values = codes.cpu()
        where = values > 0
        logs = torch.log10(values[where]).clamp(LOG_BINS[0], LOG_BINS[-1] - 1e-6)
        cell = ((logs - LOG_BINS[0]) / (LOG_BINS[1] - LOG_BINS[0])).long()
        feature = where.nonzero()[:, 1]
        histogram.add_(torch.bincount(feature * bins + cell, minlength=f * bins).double())
        moments.add_(
            torch.stack([(tokens - x_hat).pow(2).sum(), tokens.pow(2).sum(), active.sum()])
            .double()
            .cpu()
        )
        x_sum.add_(tokens.double().sum(0).cpu())
        maps = torch.from_numpy(maps_of(values.numpy(), site)).flatten(2)
        peak, position = maps.max(dim=2)
        parts.append((peak.numpy(), position.numpy(), maps.mean(2).numpy()))
        return x_hat

    n = len(images)
    for start in range(0, n, options.batch_size):
        x = torch.as_tensor(images[start : start + options.batch_size]).to(device, torch.float32)
        y = labels[start : start + len(x)]
        with torch.no_grad():
            plain = model(x).argmax(1).cpu().numpy()
            with splice(model, site, measure):
                spliced = model(x).argmax(1).cpu().numpy()
        known = y >= 0
        correct += [int((plain == y)[known].sum()), int((spliced == y)[known].sum())]
        if progress is not None:
            progress(min(start + len(x), n), n)
    maxima, peaks, means = (np.concatenate(p) for p in zip(*parts, strict=True))
    n_tokens = n * site.per_image
    mean = x_sum / n_tokens
    variance = float(moments[1] - n_tokens * mean.pow(2).sum())
    return FeatureStats(
        stats=ChannelStats(site.layer, maxima, means, peaks.astype(np.int64), site.map_shape),
        fire_counts=fire.numpy().astype(np.int64),
        cofire=cofire.numpy().astype(np.int64),
        histogram=histogram.view(f, bins).numpy().astype(np.int64),
        n_tokens=n_tokens,
        fve=1 - float(moments[0]) / max(variance, 1e-12),
        l0=float(moments[2]) / n_tokens,
        correct=correct,
        n_labelled=int((labels >= 0).sum()),
    )


def cofiring(stats: FeatureStats, feature: int, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` features that fire most often on the same tokens as ``feature`` (Jaccard).

    Returns:
        ``[n]`` feature indices and ``[n]`` Jaccard indices (tokens where both fire over tokens
        where either fires), highest first; ``feature`` itself left out.
    """
    both = stats.cofire[feature].astype(np.float64)
    either = stats.fire_counts[feature] + stats.fire_counts - both
    jaccard = np.where(either > 0, both / np.maximum(either, 1), 0.0)
    jaccard[feature] = -1
    order = np.argsort(-jaccard, kind="stable")[:n]
    return order, jaccard[order]


def quantile_examples(
    stats: FeatureStats,
    feature: int,
    quantiles: tuple[float, ...] = (0.75, 0.5, 0.25),
    per: int = 4,
) -> list[tuple[float, np.ndarray]]:
    """Images at lower activation quantiles, as sae_vis shows: for each quantile ``q`` of the
    feature's per-image peak over the images where it fires, the ``per`` images nearest it.

    Returns:
        ``(q, [<=per] image indices)`` per quantile (empty when the feature never fires).
    """
    peaks = stats.stats.maxima[:, feature]
    firing = np.flatnonzero(peaks > 0)
    out = []
    for q in quantiles:
        if not len(firing):
            out.append((q, np.zeros(0, np.int64)))
            continue
        target = np.quantile(peaks[firing], q)
        nearest = firing[np.argsort(np.abs(peaks[firing] - target), kind="stable")[:per]]
        out.append((q, nearest))
    return out
