"""What each layer outputs for one input, arranged for looking at: channel grids, a depth strip,
the first layer's filters and an MLP's input weights as images.

One forward pass captures every layer for a sample (:func:`sample_maps`); everything else here
slices that capture or reads weights, so switching layer or channel costs no model call.

What can go wrong: a layer whose output is not a stack of maps ``[C, H, W]`` (a ``ValueError``
naming its shape), a channel index out of range, an image of another size than the model takes
(resized, with a note saying so), NaN activations from diverged weights (counted in the results,
ordered last, drawn as gaps).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.activations import capture
from core.data.datasets import adapt_images

ORDERS = ("channel", "mean", "max")
"""How a grid orders channels: by index, or by mean or max activation (strongest first)."""

SUMMARIES = ("max", "mean")
"""How the depth strip sums up a layer: its strongest channel, or the mean over channels."""

SIGNED, NONNEGATIVE = "signed", "nonnegative"
SCHEMES = (SIGNED, NONNEGATIVE)
"""Colour schemes: ``signed`` values (conv outputs before a ReLU, weights) get a diverging
scale centred at 0 (red positive, white zero, blue negative); ``nonnegative`` ones (after a
ReLU, pooling) a sequential one (viridis, dark purple at the lowest value to yellow)."""

_SCHEME_TEXT = {
    SIGNED: "red positive, white 0, blue negative",
    NONNEGATIVE: "all values ≥ 0: dark purple low to yellow high (viridis)",
}


@dataclass(frozen=True)
class SampleMaps:
    """Every requested layer's output for one input, from a single forward pass.

    Attributes:
        image: ``[C, H, W]`` the input as the model saw it (after any resize).
        arrays: layer name -> that layer's output for this input, without the batch dimension
            (``[C, H, W]`` for conv layers, ``[D]`` for fully connected ones).
        logits: ``[num_classes]`` the model's output.
        note: a sentence saying how the image was adapted to the model, or ``None``.
    """

    image: np.ndarray
    arrays: dict[str, np.ndarray]
    logits: np.ndarray
    note: str | None


def fit_input(image: np.ndarray, input_shape: Sequence[int]) -> tuple[np.ndarray, str | None]:
    """Makes an image ``[C, H, W]`` fit a model's input shape, saying what was changed.

    Returns:
        The adapted ``[C', H', W']`` image and a note (``None`` when nothing changed).
    """
    target = tuple(input_shape)
    if image.ndim != 3:
        raise ValueError(f"An image must be [C, H, W]; this one has shape {image.shape}.")
    if image.shape == target:
        return image.astype(np.float32, copy=False), None
    fitted = adapt_images(image[None].astype(np.float32), target)[0]
    c, h, w = image.shape
    return fitted, (
        f"The image ({c}×{h}×{w}) was adapted to the model's input "
        f"({target[0]}×{target[1]}×{target[2]})."
    )


def sample_maps(
    model: nn.Module, image: np.ndarray, input_shape: Sequence[int], layers: Sequence[str]
) -> SampleMaps:
    """Captures ``layers`` for one image in one forward pass.

    Args:
        model: the model.
        image: ``[C, H, W]`` in ``[0, 1]``; resized to ``input_shape`` if it differs.
        input_shape: the model's ``(C, H, W)``.
        layers: layer names.
    """
    fitted, note = fit_input(image, input_shape)
    cap = capture(model, fitted[None], layers)
    arrays = {name: value[0] for name, value in cap.arrays.items()}
    return SampleMaps(image=fitted, arrays=arrays, logits=cap.logits[0], note=note)


def spatial_maps(activation: np.ndarray, layer: str) -> np.ndarray:
    """Checks that a layer's output for one sample is a stack of maps ``[C, H, W]``.

    Raises:
        ValueError: the output has another shape (a fully connected or token layer).
    """
    if activation.ndim != 3:
        raise ValueError(
            f"Layer {layer!r} outputs shape {tuple(activation.shape)}, not channel maps "
            "[C, H, W]: pick a convolutional layer for the grid."
        )
    return activation


def check_channel(num_channels: int, channel: int, layer: str) -> int:
    """Returns ``channel`` if the layer has it.

    Raises:
        ValueError: out of range.
    """
    if not 0 <= channel < num_channels:
        raise ValueError(
            f"Layer {layer!r} has {num_channels} channels (0–{num_channels - 1}); "
            f"there is no channel {channel}."
        )
    return channel


def colour_scheme(values: np.ndarray) -> str:
    """The colour scheme for an array of any shape: ``signed`` if any value is negative.

    NaN is ignored; an all-NaN or empty array counts as ``nonnegative``.
    """
    return SIGNED if np.nanmin(values, initial=0.0) < 0 else NONNEGATIVE


def colour_key(schemes: str | Sequence[str], per_map: bool, what: str = "map") -> str:
    """A one-line key for a figure's colours, for a caption.

    Args:
        schemes: the scheme, or the schemes present (e.g. a depth strip mixing both).
        per_map: each map scaled to its own range (else one scale shared by all).
        what: what one scaled unit is called (``map``, ``filter``, ``unit``).

    Returns:
        e.g. ``"Colour: red positive, white 0, blue negative; each map scaled to its own
        range."``
    """
    wanted = [schemes] if isinstance(schemes, str) else list(dict.fromkeys(schemes))
    if len(wanted) == 1:
        text = _SCHEME_TEXT[wanted[0]]
    else:
        text = f"signed maps {_SCHEME_TEXT[SIGNED]}; maps ≥ 0 viridis, dark purple to yellow"
    scale = f"each {what} scaled to its own range" if per_map else f"one scale for all {what}s"
    return f"Colour: {text}; {scale}."


def _strength(activation: np.ndarray, by: str) -> np.ndarray:
    """``[C]`` per-channel mean or max over positions, NaN where a channel has any NaN."""
    flat = activation.reshape(len(activation), -1)
    return flat.mean(axis=1) if by == "mean" else flat.max(axis=1)


def channel_order(activation: np.ndarray, order: str = "channel") -> np.ndarray:
    """Channel indices in display order.

    Args:
        activation: ``[C, H, W]`` one sample's maps.
        order: one of :data:`ORDERS`; ``mean`` and ``max`` put the strongest first and channels
            containing NaN last.

    Returns:
        ``[C]`` int array, a permutation of ``range(C)``.
    """
    if order not in ORDERS:
        raise ValueError(f"Unknown order {order!r}: use one of {', '.join(ORDERS)}.")
    if order == "channel":
        return np.arange(len(activation))
    strength = np.nan_to_num(_strength(activation, order), nan=-np.inf)
    return np.argsort(-strength, kind="stable")


@dataclass(frozen=True)
class ChannelGrid:
    """One page of a layer's channel maps for one sample, in display order.

    Attributes:
        layer: the layer's name.
        maps: ``[K, H, W]`` the maps on this page.
        channels: ``[K]`` each map's channel index.
        means: ``[K]`` each map's mean (NaN if it has NaN).
        maxima: ``[K]`` each map's max (NaN if it has NaN).
        total: the layer's number of channels.
        nan_channels: channels of the whole layer containing NaN.
        scheme: the colour scheme of the whole layer's output (see :func:`colour_scheme`), so
            that every page of the grid is drawn alike.
    """

    layer: str
    maps: np.ndarray
    channels: np.ndarray
    means: np.ndarray
    maxima: np.ndarray
    total: int
    nan_channels: int
    scheme: str = NONNEGATIVE


def channel_grid(
    activation: np.ndarray, layer: str, order: str = "channel", page: int = 0, per_page: int = 64
) -> ChannelGrid:
    """A page of channel maps for the grid.

    Args:
        activation: ``[C, H, W]`` one sample's output of ``layer``.
        layer: its name (for messages).
        order: one of :data:`ORDERS`.
        page: which page of ``per_page`` channels (0-based).
        per_page: channels per page.

    Raises:
        ValueError: not a spatial layer, or no such page.
    """
    spatial_maps(activation, layer)
    pages = -(-len(activation) // per_page)
    if not 0 <= page < pages:
        raise ValueError(f"Layer {layer!r} has {pages} page(s) of {per_page} channels.")
    channels = channel_order(activation, order)[page * per_page : (page + 1) * per_page]
    maps = activation[channels]
    return ChannelGrid(
        layer=layer,
        maps=maps,
        channels=channels,
        means=_strength(maps, "mean"),
        maxima=_strength(maps, "max"),
        total=len(activation),
        nan_channels=int(np.isnan(activation).any(axis=(1, 2)).sum()),
        scheme=colour_scheme(activation),
    )


def page_of_channel(channel: int, order_ranks: np.ndarray, per_page: int = 64) -> int:
    """The grid page (0-based) on which ``channel`` is shown.

    Args:
        channel: a channel index.
        order_ranks: ``[C]`` the display order, channel indices first shown first, as from
            :func:`channel_order` (``np.arange(C)`` when ordered by index).
        per_page: channels per page.

    Raises:
        ValueError: ``channel`` is not in ``order_ranks``.

    Example: by index, 64 per page, channel 254 is on page 3 (channels 192–255).
    """
    position = np.flatnonzero(np.asarray(order_ranks) == channel)
    if not len(position):
        raise ValueError(f"There is no channel {channel} among {len(order_ranks)} channels.")
    return int(position[0]) // per_page


def channel_at_input(activation: np.ndarray, channel: int, size: tuple[int, int]) -> np.ndarray:
    """One channel's map resized to the input's ``(H, W)`` (bilinear), for an overlay.

    NaN becomes 0 so that one bad value does not blank the neighbourhood.

    Returns:
        ``[H, W]`` float32.
    """
    check_channel(len(activation), channel, "this layer")
    plane = torch.from_numpy(np.nan_to_num(activation[channel]).astype(np.float32))
    return F.interpolate(plane[None, None], size=size, mode="bilinear", align_corners=False)[
        0, 0
    ].numpy()


@dataclass(frozen=True)
class DepthStrip:
    """One summary map per layer, first to last, for one sample.

    Attributes:
        layers: layer names in forward order.
        maps: one ``[H_l, W_l]`` map per layer (resolutions differ).
        channels: the strongest channel per layer (``summary="max"``) or ``None`` (``mean``).
        summary: one of :data:`SUMMARIES`.
    """

    layers: tuple[str, ...]
    maps: tuple[np.ndarray, ...]
    channels: tuple[int | None, ...]
    summary: str


def depth_strip(sample: SampleMaps, layers: Sequence[str], summary: str = "max") -> DepthStrip:
    """Sums up each spatial layer of ``layers`` as one map.

    Args:
        sample: the sample's captured layers.
        layers: names, in forward order; each must be in ``sample.arrays`` and spatial.
        summary: ``max``: the channel with the highest mean activation; ``mean``: the mean over
            channels.
    """
    if summary not in SUMMARIES:
        raise ValueError(f"Unknown summary {summary!r}: use one of {', '.join(SUMMARIES)}.")
    maps, channels = [], []
    for name in layers:
        activation = spatial_maps(sample.arrays[name], name)
        if summary == "mean":
            maps.append(activation.mean(axis=0))
            channels.append(None)
        else:
            best = int(channel_order(activation, "mean")[0])
            maps.append(activation[best])
            channels.append(best)
    return DepthStrip(tuple(layers), tuple(maps), tuple(channels), summary)


@dataclass(frozen=True)
class WeightImages:
    """A layer's weights seen as images in its input space.

    Attributes:
        layer: the layer's name.
        weights: ``[K, C, H, W]`` the raw weights, one image per output unit or filter.
        images: ``[K, C, H, W]`` in ``[0, 1]``, each scaled on its own so that 0.5 is zero
            weight and 0 or 1 its largest magnitude.
    """

    layer: str
    weights: np.ndarray
    images: np.ndarray


def _as_images(weights: np.ndarray) -> np.ndarray:
    peak = np.abs(weights).reshape(len(weights), -1).max(axis=1)
    peak = np.where(peak > 0, peak, 1.0).reshape(-1, 1, 1, 1)
    return (0.5 + weights / (2 * peak)).astype(np.float32)


def _first(model: nn.Module, kind: type[nn.Module], what: str) -> tuple[str, nn.Module]:
    for name, module in model.named_modules():
        if isinstance(module, kind):
            return name, module
    raise ValueError(f"This model has no {what}.")


def first_conv_filters(model: nn.Module) -> WeightImages:
    """The first convolution's filters as images: the learned edge and colour detectors.

    Filters over 1 or 3 input channels are grey or RGB images; over other channel counts,
    the mean over input channels (grey).

    Raises:
        ValueError: the model has no ``nn.Conv2d``.
    """
    name, conv = _first(model, nn.Conv2d, "convolutional layer")
    weights = conv.weight.detach().float().cpu().numpy()
    if weights.shape[1] not in (1, 3):
        weights = weights.mean(axis=1, keepdims=True)
    return WeightImages(name, weights, _as_images(weights))


def input_weights(model: nn.Module, input_shape: Sequence[int]) -> WeightImages:
    """An MLP's first layer: each unit's weights as an image ``[C, H, W]`` in input space.

    Raises:
        ValueError: the first ``nn.Linear`` does not read the flattened input.
    """
    name, linear = _first(model, nn.Linear, "fully connected layer")
    c, h, w = input_shape
    if linear.in_features != c * h * w:
        raise ValueError(
            f"The first fully connected layer ({name!r}) reads {linear.in_features} features, "
            f"not the {c * h * w} input pixels, so its weights are not images."
        )
    weights = linear.weight.detach().float().cpu().numpy().reshape(-1, c, h, w)
    return WeightImages(name, weights, _as_images(weights))
