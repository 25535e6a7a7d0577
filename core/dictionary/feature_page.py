"""One feature up close: where it fires in an image, what it does to the prediction, what it
resembles among the layer's own channels, and a map of every feature's direction.

``dictionary.feature_maps`` encodes the layer's tokens of a few images into every feature's map
(the per-image view, and the heatmaps over top examples). ``dictionary.steer`` rewrites one
feature's contribution at the layer (``x + (factor - 1) * f_i(x) * d_i``: 0 ablates, 2 doubles)
and reruns the rest of the network. ``dictionary.class_effects`` is the linear version for every
feature at once: the gradient of each class's logit (centred over classes) with respect to a
shift of every token of the layer along a feature's decoder direction, averaged over images.

What can go wrong: a feature index out of range (``ValueError``); class effects are a first-order
estimate (the network after the layer is not linear), steering is the exact counterpart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.analysis import Batch, register
from core.device import model_device
from core.dictionary.sae import SAE, SAEParams
from core.dictionary.tokens import maps_of, splice, stream_tokens
from core.dictionary.train import resolve_sae
from core.feature_maps.maps import check_channel


@dataclass(frozen=True)
class SAEOptions:
    """Which SAE an analysis reads (both empty: a default SAE trained on the batch)."""

    run: str = ""
    sae: str = ""


@dataclass(frozen=True)
class FeatureMaps:
    """Every feature's map over a few images.

    Attributes:
        layer: the layer.
        maps: ``[N, F, rows, cols]`` feature activations per token position.
    """

    layer: str
    maps: np.ndarray


@register(
    "dictionary.feature_maps",
    family="dictionary",
    title="Where each SAE feature fires in an image",
    options=SAEOptions,
)
def feature_maps(
    model: nn.Module,
    batch: Batch,
    options: SAEOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> FeatureMaps:
    """Encodes the layer's tokens of ``batch``'s images (keep the batch small: ``N*F*T``)."""
    params, site = resolve_sae(model, batch, options.run, options.sae)
    sae = SAE.from_params(params).to(model_device(model))
    parts = []
    for _, tokens in stream_tokens(model, batch.images, site):
        with torch.no_grad():
            parts.append(maps_of(sae.encode(tokens).cpu().numpy(), site))
    if progress is not None:
        progress(1, 1)
    return FeatureMaps(site.layer, np.concatenate(parts) if parts else np.zeros((0, 0, 1, 1)))


@dataclass(frozen=True)
class SteerOptions:
    """Which feature to rewrite, and by how much."""

    run: str = ""
    sae: str = ""
    feature: int = 0
    factor: float = 0.0  # 0: ablate, 1: unchanged, 2: doubled, ...


@dataclass(frozen=True)
class Steered:
    """Class probabilities before and after rewriting one feature.

    Attributes:
        before: ``[N, K]`` probabilities of the plain model.
        after: ``[N, K]`` with the feature's contribution multiplied by ``factor``.
        activation: ``[N]`` the feature's summed activation over each image's tokens.
    """

    before: np.ndarray
    after: np.ndarray
    activation: np.ndarray


@register(
    "dictionary.steer",
    family="dictionary",
    title="Ablate or amplify one SAE feature",
    options=SteerOptions,
)
def steer(
    model: nn.Module,
    batch: Batch,
    options: SteerOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Steered:
    """Runs ``batch`` plain and with feature ``options.feature`` scaled by ``options.factor``.

    Raises:
        ValueError: feature out of range.
    """
    params, site = resolve_sae(model, batch, options.run, options.sae)
    check_channel(params.d_sae, options.feature, f"the SAE on {site.layer}")
    device = model_device(model)
    sae = SAE.from_params(params).to(device)
    direction = sae.W_dec[options.feature].detach() / sae.scale
    totals: list[torch.Tensor] = []

    def rewrite(tokens: torch.Tensor) -> torch.Tensor:
        f = sae.encode(tokens)[:, options.feature : options.feature + 1]
        totals.append(f.reshape(-1, site.per_image).sum(1).cpu())
        return tokens + (options.factor - 1) * f * direction

    x = torch.as_tensor(batch.images).to(device, torch.float32)
    with torch.no_grad():
        before = model(x).softmax(1).cpu().numpy()
        with splice(model, site, rewrite):
            after = model(x).softmax(1).cpu().numpy()
    if progress is not None:
        progress(1, 1)
    return Steered(before, after, torch.cat(totals).numpy())


@dataclass(frozen=True)
class ClassEffects:
    """Which classes each feature's decoder direction pushes up and down.

    Attributes:
        effects: ``[F, K]`` change of each class's logit (centred over classes) per unit shift
            of every token along the feature's direction (normalised units), image mean.
    """

    effects: np.ndarray


@register(
    "dictionary.class_effects",
    family="dictionary",
    title="Classes each SAE feature pushes up and down",
    options=SAEOptions,
)
def class_effects(
    model: nn.Module,
    batch: Batch,
    options: SAEOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> ClassEffects:
    """The gradient of the centred logits with respect to a shared shift of the layer's tokens,
    projected on every decoder direction (one backward pass per class)."""
    params, site = resolve_sae(model, batch, options.run, options.sae)
    device = model_device(model)
    shift = torch.zeros(site.d_in, device=device, requires_grad=True)
    x = torch.as_tensor(batch.images).to(device, torch.float32)
    with torch.enable_grad(), splice(model, site, lambda tokens: tokens + shift):
        logits = model(x)
        centred = (logits - logits.mean(1, keepdim=True)).mean(0)
        rows = []
        for k in range(len(centred)):
            (grad,) = torch.autograd.grad(centred[k], shift, retain_graph=k < len(centred) - 1)
            rows.append(grad.cpu())
            if progress is not None:
                progress(k + 1, len(centred))
    jacobian = torch.stack(rows).numpy()  # [K, d_in], per raw unit
    return ClassEffects((params.W_dec / params.scale) @ jacobian.T)


def nearest_channels(params: SAEParams, feature: int, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The layer's channels closest to a feature's decoder direction: the cosine of the
    direction with each channel's unit vector is its normalised component.

    Returns:
        ``[n]`` channels and ``[n]`` cosines (signed), largest magnitude first.
    """
    check_channel(params.d_sae, feature, "the SAE")
    row = params.W_dec[feature]
    cosine = row / max(float(np.linalg.norm(row)), 1e-12)
    order = np.argsort(-np.abs(cosine), kind="stable")[:n]
    return order, cosine[order]


def decoder_map(params: SAEParams) -> np.ndarray:
    """``[F, 2]`` the decoder directions' first two principal components (a map of features)."""
    rows = params.W_dec / np.maximum(np.linalg.norm(params.W_dec, axis=1, keepdims=True), 1e-12)
    centred = rows - rows.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    signs = np.sign(coords[np.abs(coords).argmax(0), range(coords.shape[1])])  # fixed signs
    return (coords * np.where(signs == 0, 1, signs)).astype(np.float32)
