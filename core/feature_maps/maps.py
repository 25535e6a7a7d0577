"""What each layer outputs for one input, arranged for looking at: channel grids, a depth strip,
the default layers and counts a page starts from (weights as images: :mod:`.weights`).

One forward pass captures every layer for a sample (:func:`sample_maps`); everything else here
slices that capture or reads weights, so switching layer or channel costs no model call.

What can go wrong: a layer whose output is not a stack of maps ``[C, H, W]`` (a ``ValueError``
naming its shape), a channel index out of range, an image of another size than the model takes
(resized, with a note saying so), NaN activations from diverged weights (counted in the results,
ordered last, drawn as gaps).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.activations import LayerInfo, capture, list_layers
from core.analysis import Batch, Inputs, register
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
    """

    image: np.ndarray
    arrays: dict[str, np.ndarray]
    logits: np.ndarray


@dataclass(frozen=True)
class SampleMapsOptions:
    """Which input of the batch, and which layers."""

    index: int = 0  # the batch's image to capture (a page passes a batch of one)
    layers: tuple[str, ...] = ()  # layer names; empty: every layer with maps or units


PER_PAGE = 64
"""Channel maps per grid page."""
DEPTH_LAYERS = 24
"""Layers the across-depth strip shows at first."""
SHAPE_INPUTS = Inputs.sample(0)
"""The input of analyses that read only the input's shape (weights, receptive fields): one fixed
image, so they are not recomputed for every sample."""


def map_layers(layers: Sequence[LayerInfo]) -> list[LayerInfo]:
    """The layers with channel maps ``[C, H, W]``, tokens ``[T, D]`` or units ``[D]``."""
    return [la for la in layers if len(la.output_shape) in (1, 2, 3)]


def default_layer(layers: Sequence[LayerInfo]) -> str:
    """The first convolution, else the first layer."""
    return next((la.name for la in layers if la.type == "Conv2d"), layers[0].name)


def default_depth_layers(spatial: Sequence[LayerInfo]) -> list[str]:
    """The convolutions (else every spatial layer), up to :data:`DEPTH_LAYERS`."""
    convs = [la.name for la in spatial if la.type == "Conv2d"] or [la.name for la in spatial]
    return convs[:DEPTH_LAYERS]


def resolve_layer(model: nn.Module, input_shape: Sequence[int], layer: str) -> str:
    """``layer``, or the model's :func:`default_layer` when it is empty."""
    return layer or default_layer(map_layers(list_layers(model, input_shape)))


def unit_count(activation: np.ndarray) -> int:
    """Channels of ``[C, H, W]``, units of ``[D]``, or the width of tokens ``[T, D]``."""
    return activation.shape[1] if activation.ndim == 2 else activation.shape[0]


def page_count(count: int) -> int:
    """Grid pages for ``count`` channels."""
    return -(-count // PER_PAGE)


def nan_warning(activation: np.ndarray) -> str | None:
    """What to say when a layer's output for this input holds NaN (``None``: it does not)."""
    if not np.isnan(activation).any():
        return None
    where = "It contains"
    if activation.ndim > 1:
        bad = np.isnan(activation).any(axis=tuple(range(1, activation.ndim)))
        where = f"{int(bad.sum())} of {len(bad)} channels contain"
    return (
        f"{where} NaN for this input: the weights may have diverged. NaN shows as gaps, "
        "and such channels sort last."
    )


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


@register(
    "feature_maps.sample_maps",
    family="feature_maps",
    title="Every layer's output for one input",
    options=SampleMapsOptions,
)
def sample_maps(
    model: nn.Module,
    batch: Batch,
    options: SampleMapsOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> SampleMaps:
    """Captures the layers for one image of ``batch`` in one forward pass.

    Args:
        model: the model.
        batch: images ``[N, C, H, W]`` in the model's input shape; ``options.index`` is used.
        options: which image and layers.
        progress: unused (one forward pass).
    """
    image = batch.images[options.index]
    layers = options.layers or tuple(la.name for la in map_layers(list_layers(model, image.shape)))
    cap = capture(model, image[None], layers)
    arrays = {name: value[0] for name, value in cap.arrays.items()}
    return SampleMaps(image=image, arrays=arrays, logits=cap.logits[0])


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
