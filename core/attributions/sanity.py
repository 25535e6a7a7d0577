"""Can an explanation be trusted? Adebayo et al. 2018's cascading model randomisation.

A map that explains the model must change when the model's learned weights are destroyed.
Starting from the top (the head) and moving down, each step re-draws the parameters of a few
more layers of a deep copy of the model and recomputes every method's map. A method whose
maps stay rank-correlated with the original after the weights are gone is explaining the
image (edges, colours), not the model: it fails the check.

Re-drawn parameters are Gaussian with each tensor's own mean and standard deviation, so
activations keep their scale and only the learned structure is lost. The target class stays
the one explained on the original model. The shared model is never modified.

The verdict follows the paper's statistic: the Spearman rank correlation of the maps' absolute
values with the original's (signs are dropped because many methods flip sign freely). A method
FAILS when that similarity is still at least :data:`SIMILARITY_THRESHOLD` after every layer has
been randomised (the last step); it passes otherwise, including when the correlation turns
negative: an anti-correlated map has changed, which is what an explanation of the model must do.

What can go wrong: a map that is constant (e.g. Grad-CAM after randomisation leaves all
channels negative) has no rank correlation; it is reported as NaN and its verdict is
:data:`UNDETERMINED`. One image and one seed are one draw: a borderline value can flip.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from core.analysis import Batch, register
from core.attributions.methods import METHODS, MethodOptions, attribute, resolve_methods
from core.hooks import model_lock

SIMILARITY_STATISTIC = "Spearman ρ of |map| with the original"
"""What :attr:`SanityCheck.final_similarity` measures (Adebayo et al. 2018's rank correlation)."""
SIMILARITY_THRESHOLD = 0.5
"""A method fails when its final similarity is at least this: the map survived randomisation."""
PASSES, FAILS, UNDETERMINED = "passes", "FAILS", "undetermined"
"""The three verdicts."""
VERDICT_MEANING = {
    PASSES: "the map changed when the weights were randomised",
    FAILS: "the map barely depends on the learned weights",
    UNDETERMINED: "a map is constant, so there is no rank correlation to judge",
}
"""One clause per verdict, for tables."""
SANITY_METHODS = ("saliency", "integrated_gradients", "guided_backprop", "grad_cam")
"""The methods checked by default (where the model supports them): the paper's contrast of
gradients, a path method, a modified backward pass and a CAM."""


@dataclass(frozen=True)
class SanityOptions(MethodOptions):
    """Which methods to check, in how many steps (and :class:`MethodOptions` for each map)."""

    methods: tuple[str, ...] = ()  # keys of METHODS; (): SANITY_METHODS the model supports
    steps: int = 5  # randomisation steps; layers are grouped top-down into this many chunks
    weight_seed: int = 0  # seed of the re-drawn weights


@dataclass(frozen=True)
class SanityCheck:
    """Maps of each method as the model is randomised from the top down.

    Attributes:
        methods: ``[M]`` method names.
        steps: ``[S + 1]`` labels: ``original``, then the lowest layer randomised so far.
        heats: ``[S + 1, M, H, W]`` maps (summed over channels).
        spearman: ``[S + 1, M]`` rank correlation of each map with the original's.
        spearman_abs: ``[S + 1, M]`` the same for the maps' absolute values (the verdict's).
        target: the class explained.
        threshold: similarity at or above which a method fails (:data:`SIMILARITY_THRESHOLD`).
        statistic: what the similarity is (:data:`SIMILARITY_STATISTIC`).
    """

    methods: tuple[str, ...]
    steps: tuple[str, ...]
    heats: np.ndarray
    spearman: np.ndarray
    spearman_abs: np.ndarray
    target: int
    threshold: float = SIMILARITY_THRESHOLD
    statistic: str = SIMILARITY_STATISTIC

    @property
    def final_similarity(self) -> np.ndarray:
        """``[M]`` similarity after every layer is randomised; NaN for a constant map.

        NaN as well when no step randomised anything (a model without parameters).
        """
        if len(self.steps) < 2:
            return np.full(len(self.methods), np.nan)
        return np.asarray(self.spearman_abs[-1], dtype=float)

    @property
    def verdicts(self) -> tuple[str, ...]:
        """``[M]`` :data:`PASSES`, :data:`FAILS` or :data:`UNDETERMINED` per method."""
        return tuple(
            UNDETERMINED if np.isnan(r) else FAILS if r >= self.threshold else PASSES
            for r in self.final_similarity
        )

    @property
    def passed(self) -> np.ndarray:
        """``[M]`` bool: the map changed. False for failed and for undetermined methods."""
        return np.array([v == PASSES for v in self.verdicts], dtype=bool)

    @property
    def rule_text(self) -> str:
        """The rule in one line, for a caption."""
        return (
            f"A method fails when the {self.statistic} is still ≥ {self.threshold:g} after every "
            "layer is randomised; a negative ρ means the map changed (passes); a constant map "
            "has no ρ (undetermined)."
        )

    def verdict_text(self, method: str) -> str:
        """One line for a caption: the verdict of ``method`` (a key of :attr:`methods`) and why."""
        j = self.methods.index(method)
        name = METHODS.get(method, method)
        verdict = self.verdicts[j]
        if verdict == UNDETERMINED:
            return f"{name}: {verdict}, {VERDICT_MEANING[verdict]}."
        r = float(self.final_similarity[j])
        sign = "≥" if verdict == FAILS else "<"
        return (
            f"{name} {verdict}: after randomising every layer, ρ(|map|) = {r:.2f} {sign} "
            f"{self.threshold:g}, so {VERDICT_MEANING[verdict]}."
        )


def parameter_layers(model: nn.Module) -> list[str]:
    """Names of modules that own parameters, top (output) first."""
    return [n for n, m in model.named_modules() if any(True for _ in m.parameters(False))][::-1]


def randomize_(module: nn.Module, generator: torch.Generator) -> None:
    """Re-draws ``module``'s own parameters in place: Gaussian, each tensor's mean and std."""
    with torch.no_grad():
        for p in module.parameters(recurse=False):
            std = p.std() if p.numel() > 1 else p.new_zeros(())
            noise = torch.randn(p.shape, generator=generator).to(p.device, p.dtype)
            p.copy_(noise * std + p.mean())


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a.reshape(-1), b.reshape(-1)).statistic)


@register("attributions.sanity_check", "attributions", "Sanity check", SanityOptions)
def sanity_check(
    model: nn.Module,
    batch: Batch,
    options: SanityOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> SanityCheck:
    """Runs the cascading randomisation check of the batch's first image on a copy of ``model``
    (the check is per image: one map per method and step).

    Args:
        model: the trained classifier (left untouched).
        batch: its first image ``[C, H, W]`` is explained.
        options: methods, steps and seed; the target is fixed from the original model.
        progress: called as ``progress(done, total)`` after each step.
    """
    image = batch.images[0]
    methods = options.methods or tuple(
        m for m in resolve_methods(model, batch, ()) if m in SANITY_METHODS
    )
    first = {m: attribute(model, image, m, options) for m in methods}
    options = replace(options, target=next(iter(first.values())).target)
    with model_lock(model):
        randomized = copy.deepcopy(model)
    layers = parameter_layers(randomized)
    chunks = [c for c in np.array_split(np.array(layers, dtype=object), options.steps) if len(c)]
    generator = torch.Generator().manual_seed(options.weight_seed)
    maps = [[first[m].heat for m in methods]]
    labels = ["original"]
    for i, chunk in enumerate(chunks, start=1):
        for name in chunk:
            randomize_(randomized.get_submodule(name), generator)
        maps.append([attribute(randomized, image, m, options).heat for m in methods])
        labels.append(str(chunk[-1]))
        if progress is not None:
            progress(i, len(chunks))
    heats = np.asarray(maps, dtype=np.float32)
    spearman = np.vectorize(_rank_correlation, signature="(h,w),(h,w)->()")(heats[:1], heats)
    spearman_abs = np.vectorize(_rank_correlation, signature="(h,w),(h,w)->()")(
        np.abs(heats[:1]), np.abs(heats)
    )
    return SanityCheck(tuple(methods), tuple(labels), heats, spearman, spearman_abs, options.target)
