"""PCA as colour: a layer's patch or position vectors, three principal components shown as RGB.

The DINOv2 figures' recipe (Oquab et al. 2023; facebookresearch/dinov2 issues #23, #412): one
PCA is fitted jointly over the position vectors of a batch of images (a conv layer's
``[C, h, w]`` gives ``h * w`` vectors of ``C``; a ViT layer's ``[T, D]`` its patch tokens, CLS and
other extra tokens dropped). The first component, thresholded, separates object from
background; a second PCA over the foreground vectors gives three components, min-max scaled
over the fit batch and mapped to red, green and blue. One change to the recipe: the first
component is fitted on each image's vectors minus their own mean, because in a small classifier
the largest variation in a deep layer is between images (their class), and thresholding it would
mark whole images foreground or background instead of the object within each. The fitted
:class:`ColourBasis` is kept, so :func:`apply_basis` colours any other image with it: the same
colour means the same part across images. :func:`pca_colours` (registered as
``feature_maps.pca_colour``) fits and colours a batch.

What can go wrong: the first component's sign is arbitrary; it is oriented so that the patches
on the image's border (mostly background) score low, which is wrong for images whose object
touches every border. A layer with fewer than four foreground vectors, or without positions
(a fully connected layer, a token count no grid fits), raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from core.activations import LayerInfo, capture, list_layers
from core.analysis import Batch, register
from core.attention.layout import token_layout

FIT_N = 256
"""Validation images a page fits each layer's basis on (class-stratified, seed 0)."""
GRID_N = 16
"""Images a page shows at one layer."""
DEPTH_LAYERS = 8
"""Layers the across-depth strip shows at most."""


@dataclass(frozen=True)
class PcaColourOptions:
    """Options of :func:`pca_colours`."""

    layer: str = ""  # a layer with positions; empty: the model's default (default_pca_layer)
    threshold: float = 0.0  # foreground: first-component score above this, in its std units


@dataclass(frozen=True)
class ColourBasis:
    """One layer's fitted colouring, kept to colour other images the same way.

    Attributes:
        layer: the layer's name.
        first: ``[D]`` unit first principal component of the vectors minus their image's mean,
            oriented so borders score low.
        first_std: standard deviation of the fit vectors' first-component scores.
        threshold: foreground threshold on the first component, in ``first_std`` units.
        fg_mean: ``[D]`` mean of the foreground fit vectors.
        components: ``[3, D]`` principal components of the foreground vectors (rows unit).
        low: ``[3]`` smallest foreground score of each component over the fit batch.
        high: ``[3]`` largest.
        explained: ``[3]`` share of the foreground variance each component explains.
    """

    layer: str
    first: np.ndarray
    first_std: float
    threshold: float
    fg_mean: np.ndarray
    components: np.ndarray
    low: np.ndarray
    high: np.ndarray
    explained: np.ndarray


@dataclass(frozen=True)
class PcaColours:
    """A batch coloured by its layer's basis.

    Attributes:
        basis: the basis (fitted on this batch by :func:`pca_colours`).
        rgb: ``[N, h, w, 3]`` float32 in ``[0, 1]``; background positions are 0 (black).
        foreground: ``[N, h, w]`` bool, first-component score above the threshold.
        first: ``[N, h, w]`` float32 first-component score in ``first_std`` units.
        images: ``[N, C, H, W]`` the inputs, for drawing beside their colours.
    """

    basis: ColourBasis
    rgb: np.ndarray
    foreground: np.ndarray
    first: np.ndarray
    images: np.ndarray


def position_layers(layers: Sequence[LayerInfo], image: tuple[int, int]) -> list[str]:
    """Layers whose outputs are vectors at positions: conv maps ``[C, h, w]`` with more than one
    position, and token layers ``[T, D]`` whose tokens form a patch grid of the image."""
    names = []
    for layer in layers:
        shape = layer.output_shape
        maps = len(shape) == 3 and shape[1] * shape[2] > 1
        if maps or (len(shape) == 2 and _grid_fits(shape[0], image)):
            names.append(layer.name)
    return names


def _grid_fits(n_tokens: int, image: tuple[int, int]) -> bool:
    try:
        return token_layout(nn.Module(), n_tokens, image).n_patches > 1
    except ValueError:
        return False


def default_pca_layer(layers: Sequence[LayerInfo], image: tuple[int, int]) -> str:
    """The deepest token layer with a patch grid (a ViT's last block output), else the deepest
    conv layer whose maps are at least 8x8.

    Raises:
        ValueError: no layer has positions.
    """
    by_name = {la.name: la for la in layers}
    names = position_layers(layers, image)
    tokens = [n for n in names if len(by_name[n].output_shape) == 2 and n.count(".") == 1]
    if tokens:
        return tokens[-1]
    big = [n for n in names if min(by_name[n].output_shape[1:]) >= 8]
    if not (big or names):
        raise ValueError("This model has no layer with positions to colour.")
    return (big or names)[-1]


def depth_pca_layers(layers: Sequence[LayerInfo], image: tuple[int, int]) -> list[str]:
    """Layers for one image across depth: a ViT's patch embedding and block outputs, else the
    conv layers; at most :data:`DEPTH_LAYERS`, spread evenly from first to last."""
    names = position_layers(layers, image)
    by_name = {la.name: la for la in layers}
    blocks = [n for n in names if len(by_name[n].output_shape) == 2 and n.count(".") == 1]
    if blocks:
        chosen = [n for n in names if n == "patch_embed"] + blocks
    else:
        chosen = [n for n in names if by_name[n].type == "Conv2d"] or names
    if len(chosen) <= DEPTH_LAYERS:
        return chosen
    picks = np.linspace(0, len(chosen) - 1, DEPTH_LAYERS).round().astype(int)
    return [chosen[i] for i in picks]


def position_vectors(model: nn.Module, activation: np.ndarray, image: tuple[int, int]):
    """A layer's output as vectors at positions.

    Args:
        model: the model (its patch size places ViT tokens).
        activation: ``[N, C, h, w]`` conv maps or ``[N, T, D]`` tokens.
        image: ``(H, W)`` of the input.

    Returns:
        ``[N, h, w, D]`` float64 vectors (a ViT's patch tokens on their grid, extra tokens
        dropped).

    Raises:
        ValueError: a layer without positions.
    """
    if activation.ndim == 4:
        return activation.transpose(0, 2, 3, 1).astype(np.float64)
    if activation.ndim == 3:
        layout = token_layout(model, activation.shape[1], image)
        patches = activation[:, layout.patches]
        return patches.reshape(len(activation), *layout.grid, -1).astype(np.float64)
    raise ValueError(
        f"A layer output of shape {activation.shape[1:]} has no positions: pick a conv layer "
        "or a transformer block."
    )


def _pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean ``[D]``, top-``k`` unit components ``[k, D]`` and explained-variance shares ``[k]``
    of ``x [M, D]``; each component's largest-magnitude loading is positive (scikit-learn's
    sign convention)."""
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    vt = vt[:k]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    total = max(float((s**2).sum()), 1e-30)
    return mean, vt * signs[:, None], (s[:k] ** 2) / total


def _within_image(vectors: np.ndarray) -> np.ndarray:
    """``[N, h, w, D]`` minus each image's mean vector: what varies inside an image."""
    return vectors - vectors.mean(axis=(1, 2), keepdims=True)


def fit_basis(vectors: np.ndarray, layer: str, threshold: float = 0.0) -> ColourBasis:
    """Fits the colouring on ``vectors [N, h, w, D]`` (all positions of a batch, jointly).

    Raises:
        ValueError: fewer than four foreground vectors, or fewer than three dimensions.
    """
    _, h, w, d = vectors.shape
    if d < 3:
        raise ValueError(f"Layer {layer!r} has {d} channels: three components need three.")
    flat = vectors.reshape(-1, d)
    _, first, _ = _pca(_within_image(vectors).reshape(-1, d), 1)
    first = first[0]
    scores = _within_image(vectors) @ first
    border = np.ones((h, w), bool)
    border[1:-1, 1:-1] = h <= 2 or w <= 2
    if scores[:, border].mean() > scores.mean():
        first = -first
        scores = -scores
    std = max(float(scores.std()), 1e-12)
    fg = flat[(scores / std).reshape(-1) > threshold]
    if len(fg) < 4:
        raise ValueError(
            f"Only {len(fg)} positions of layer {layer!r} are above the foreground threshold."
        )
    fg_mean, components, explained = _pca(fg, 3)
    projected = (fg - fg_mean) @ components.T
    return ColourBasis(
        layer=layer,
        first=first.astype(np.float32),
        first_std=std,
        threshold=threshold,
        fg_mean=fg_mean.astype(np.float32),
        components=components.astype(np.float32),
        low=projected.min(axis=0).astype(np.float32),
        high=projected.max(axis=0).astype(np.float32),
        explained=explained.astype(np.float32),
    )


def colour(vectors: np.ndarray, basis: ColourBasis) -> tuple[np.ndarray, ...]:
    """Colours ``vectors [N, h, w, D]`` with a kept basis.

    Returns:
        ``rgb [N, h, w, 3]`` in ``[0, 1]`` (background 0), ``foreground [N, h, w]`` bool and
        the first-component score ``[N, h, w]`` in ``first_std`` units.
    """
    first = (_within_image(vectors) @ basis.first) / basis.first_std
    foreground = first > basis.threshold
    scores = (vectors - basis.fg_mean) @ basis.components.T
    span = np.maximum(basis.high - basis.low, 1e-12)
    rgb = np.clip((scores - basis.low) / span, 0, 1) * foreground[..., None]
    return rgb.astype(np.float32), foreground, first.astype(np.float32)


def _layer_vectors(model: nn.Module, images: np.ndarray, layer: str) -> np.ndarray:
    activation = capture(model, images, [layer]).arrays[layer]
    return position_vectors(model, activation, tuple(images.shape[2:4]))


def apply_basis(model: nn.Module, images: np.ndarray, basis: ColourBasis) -> PcaColours:
    """Colours ``images [N, C, H, W]`` at ``basis.layer`` with a basis fitted before."""
    rgb, foreground, first = colour(_layer_vectors(model, images, basis.layer), basis)
    return PcaColours(basis, rgb, foreground, first, images)


def resolve_pca_layer(model: nn.Module, input_shape: Sequence[int], layer: str) -> str:
    """``layer``, or :func:`default_pca_layer` when it is empty."""
    image = (int(input_shape[1]), int(input_shape[2]))
    return layer or default_pca_layer(list_layers(model, input_shape), image)


@register(
    "feature_maps.pca_colour",
    family="feature_maps",
    title="PCA as colour",
    options=PcaColourOptions,
)
def pca_colours(
    model: nn.Module,
    batch: Batch,
    options: PcaColourOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> PcaColours:
    """Fits a layer's colour basis jointly over ``batch`` and colours every image of it.

    Args:
        model: a CNN or a vision transformer.
        batch: ``[N, C, H, W]`` images (the fit batch; a few dozen or more).
        options: the layer and the foreground threshold.
        progress: called once, as ``progress(N, N)``, when done.

    Raises:
        ValueError: a layer without positions, or too little foreground.
    """
    layer = resolve_pca_layer(model, batch.images.shape[1:], options.layer)
    vectors = _layer_vectors(model, batch.images, layer)
    basis = fit_basis(vectors, layer, options.threshold)
    rgb, foreground, first = colour(vectors, basis)
    if progress is not None:
        progress(len(batch), len(batch))
    return PcaColours(basis, rgb, foreground, first, batch.images)
