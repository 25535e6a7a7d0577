"""Can an explanation be trusted? Adebayo et al. 2018's cascading model randomisation.

A map that explains the model must change when the model's learned weights are destroyed.
Starting from the top (the head) and moving down, each step re-draws the parameters of a few
more layers of a deep copy of the model and recomputes every method's map. A method whose
maps stay rank-correlated with the original after the weights are gone is explaining the
image (edges, colours), not the model: it fails the check.

Re-drawn parameters are Gaussian with each tensor's own mean and standard deviation, so
activations keep their scale and only the learned structure is lost. The target class stays
the one explained on the original model. The shared model is never modified.

What can go wrong: a map that is constant (e.g. Grad-CAM after randomisation leaves all
channels negative) has no rank correlation; it is reported as NaN.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from core.attribution import AttributionOptions, attribute
from core.hooks import model_lock


@dataclass(frozen=True)
class SanityCheck:
    """Maps of each method as the model is randomised from the top down.

    Attributes:
        methods: ``[M]`` method names.
        steps: ``[S + 1]`` labels: ``original``, then the lowest layer randomised so far.
        heats: ``[S + 1, M, H, W]`` maps (summed over channels).
        spearman: ``[S + 1, M]`` rank correlation of each map with the original's.
        spearman_abs: ``[S + 1, M]`` the same for the maps' absolute values.
        target: the class explained.
    """

    methods: tuple[str, ...]
    steps: tuple[str, ...]
    heats: np.ndarray
    spearman: np.ndarray
    spearman_abs: np.ndarray
    target: int


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


def cascading_randomization(
    model: nn.Module,
    image: np.ndarray,
    methods: tuple[str, ...],
    options: AttributionOptions,
    max_steps: int = 6,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> SanityCheck:
    """Runs the cascading randomisation check on a copy of ``model``.

    Args:
        model: the trained classifier (left untouched).
        image: ``[C, H, W]`` input.
        methods: keys of :data:`core.attribution.METHODS`.
        options: attribution options (the target is fixed from the original model).
        max_steps: randomisation steps; layers are grouped top-down into this many chunks.
        seed: seed of the re-drawn weights.
        progress: called as ``progress(done, total)`` after each step.
    """
    first = {m: attribute(model, image, m, options) for m in methods}
    options = replace(options, target=next(iter(first.values())).target)
    with model_lock(model):
        randomized = copy.deepcopy(model)
    layers = parameter_layers(randomized)
    chunks = [c for c in np.array_split(np.array(layers, dtype=object), max_steps) if len(c)]
    generator = torch.Generator().manual_seed(seed)
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
