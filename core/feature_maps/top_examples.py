"""Top-activating examples: which samples drive a channel hardest, and where in each image.

:func:`channel_stats` runs the model up to one layer over a set of images, batch by batch, and
keeps per sample and channel only the spatial max, its position and the mean: ``[N, C]`` numbers
instead of ``[N, C, H, W]`` activations, so every channel of the layer can be ranked afterwards
without another pass. :func:`top_k` ranks; :func:`receptive_field` says which input pixels each
map position can see, so :func:`crops` cuts each example around its peak. The registered
analyses are :func:`channel_stats` and :func:`receptive_field`.

The receptive field is measured, not derived from kernel sizes: on a copy of the model whose
weights are all positive (max-pools made average-pools, norms made identities up to scale), the
gradient of one unit with respect to an all-ones input is non-zero exactly on the pixels the
unit depends on. That holds for any graph (skips, concatenations, dilations), which kernel
arithmetic along a chain does not. Boxes are clipped to the image.

What can go wrong: a channel out of range, NaN activations (they rank last), a layer reached
only through a path that ignores the input (its box is empty: the whole image is returned).
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.activations import LayerInfo, layer_output, list_layers
from core.analysis import COMPATIBLE, Batch, Compatibility, Inputs, register
from core.device import model_device
from core.feature_maps.maps import check_channel, default_layer, resolve_layer
from core.hooks import model_lock

RANKINGS = ("max", "mean")
"""How a sample's activation of a channel is scored: the map's peak, or its mean."""

EXAMPLES = 12
"""Top examples shown at first."""

RANKED = Inputs(split="val")
"""The images top examples are ranked over: the whole validation split."""

_probes: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class ChannelStatsOptions:
    """Which layer :func:`channel_stats` ranks, and how many images per forward pass."""

    layer: str = ""  # a named_modules() name; "": the first convolution, else the first layer
    batch_size: int = 256  # images per forward pass: memory against progress updates


@dataclass(frozen=True)
class ChannelStats:
    """Per-sample, per-channel summaries of one layer over a set of images.

    Attributes:
        layer: the layer's name.
        maxima: ``[N, C]`` each channel's largest value per sample (a unit's value for
            fully connected layers).
        means: ``[N, C]`` each channel's mean over positions.
        peaks: ``[N, C]`` int, the flat position of the maximum within the ``map_shape`` map.
        map_shape: ``(H, W)`` of the layer's maps (``(1, 1)`` for fully connected layers,
            ``(1, T)`` for token layers ``[T, D]``).
    """

    layer: str
    maxima: np.ndarray
    means: np.ndarray
    peaks: np.ndarray
    map_shape: tuple[int, int]


def _units_by_position(output: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """``[N, C, P]`` view of a layer's output and the map shape its ``P`` positions form."""
    if output.ndim == 4:
        return output.flatten(2), tuple(output.shape[2:])
    if output.ndim == 3:
        return output.transpose(1, 2), (1, output.shape[1])
    if output.ndim == 2:
        return output[:, :, None], (1, 1)
    raise ValueError(f"Cannot rank units of an output of shape {tuple(output.shape)}.")


@register(
    "feature_maps.channel_stats",
    family="feature_maps",
    title="Every channel's peak and mean over a set of images",
    options=ChannelStatsOptions,
)
def channel_stats(
    model: nn.Module,
    batch: Batch,
    options: ChannelStatsOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> ChannelStats:
    """Runs ``batch``'s images up to the layer and keeps each channel's max, argmax and mean.

    Args:
        model: the model.
        batch: ``N`` inputs the model takes; :func:`top_k` indexes them.
        options: the layer and the forward batch size.
        progress: called as ``progress(done, total)`` after each forward batch.

    Raises:
        ValueError: no images, or a layer output that cannot be ranked.
    """
    images, batch_size = batch.images, options.batch_size
    layer = resolve_layer(model, images.shape[1:], options.layer)
    device = model_device(model)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    map_shape = (1, 1)
    for start in range(0, len(images), batch_size):
        x = torch.as_tensor(images[start : start + batch_size]).to(device, torch.float32)
        with torch.no_grad():
            units, map_shape = _units_by_position(layer_output(model, x, layer).float())
            peak_values, peak_positions = units.max(dim=2)
            parts.append(
                (
                    peak_values.cpu().numpy(),
                    peak_positions.cpu().numpy(),
                    units.mean(2).cpu().numpy(),
                )
            )
        if progress is not None:
            progress(min(start + batch_size, len(images)), len(images))
    if not parts:
        raise ValueError("No images to rank.")
    maxima, peaks, means = (np.concatenate(p) for p in zip(*parts, strict=True))
    return ChannelStats(layer, maxima, means, peaks.astype(np.int64), map_shape)


@dataclass(frozen=True)
class TopK:
    """The samples that activate one channel most, strongest first.

    Attributes:
        layer: the layer's name.
        channel: the channel (or unit).
        ranking: one of :data:`RANKINGS`.
        indices: ``[k]`` positions in the images given to :func:`channel_stats`.
        scores: ``[k]`` the ranking score of each.
        positions: ``[k, 2]`` ``(row, col)`` of each sample's peak in the layer's map.
    """

    layer: str
    channel: int
    ranking: str
    indices: np.ndarray
    scores: np.ndarray
    positions: np.ndarray


def top_k(stats: ChannelStats, channel: int, k: int = 9, ranking: str = "max") -> TopK:
    """The ``k`` samples with the highest score for ``channel`` (ties: lower index first).

    Raises:
        ValueError: unknown ranking or channel out of range.
    """
    if ranking not in RANKINGS:
        raise ValueError(f"Unknown ranking {ranking!r}: use one of {', '.join(RANKINGS)}.")
    check_channel(stats.maxima.shape[1], channel, stats.layer)
    scores = (stats.maxima if ranking == "max" else stats.means)[:, channel]
    order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[:k]
    flat = stats.peaks[order, channel]
    positions = np.stack(np.unravel_index(flat, stats.map_shape), axis=1)
    return TopK(stats.layer, channel, ranking, order, scores[order], positions)


def _positive_probe(model: nn.Module) -> nn.Module:
    """A CPU copy of ``model`` in which every unit depends positively on every input it sees."""
    with model_lock(model):
        probe = _probes.get(model)
        if probe is None:
            probe = copy.deepcopy(model).float().cpu().eval()
            for module in list(probe.modules()):
                for child_name, child in module.named_children():
                    if isinstance(child, nn.MaxPool2d):
                        pool = nn.AvgPool2d(
                            child.kernel_size, child.stride, child.padding, child.ceil_mode
                        )
                        setattr(module, child_name, pool)
                    elif isinstance(child, nn.AdaptiveMaxPool2d):
                        setattr(module, child_name, nn.AdaptiveAvgPool2d(child.output_size))
                for param_name, param in module.named_parameters(recurse=False):
                    param.requires_grad_(False)
                    if param_name == "bias":
                        param.zero_()
                    else:
                        param.fill_(1.0 / param[0].numel() if param.ndim > 1 else 1.0)
                for buffer_name, buffer in module.named_buffers(recurse=False):
                    if buffer_name in ("running_mean", "running_var"):
                        buffer.fill_(float(buffer_name == "running_var"))
            _probes[model] = probe
        return probe


@dataclass(frozen=True)
class ReceptiveField:
    """Which input pixels each position of a layer's maps can see.

    Units of a convolutional stack see rectangles whose rows depend only on the unit's row and
    whose columns only on its column, so two small tables describe every position.

    Attributes:
        layer: the layer's name.
        rows: ``[H, 2]`` first and last-plus-one input row seen by each map row.
        cols: ``[W, 2]`` the same for columns.
        input_size: the input's ``(H, W)``.
    """

    layer: str
    rows: np.ndarray
    cols: np.ndarray
    input_size: tuple[int, int]

    def boxes(self, positions: np.ndarray) -> np.ndarray:
        """``[k, 2]`` map positions ``(row, col)`` -> ``[k, 4]`` int boxes
        ``(top, left, bottom, right)`` in input pixels, bottom/right exclusive, clipped."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
        rows, cols = self.rows[positions[:, 0]], self.cols[positions[:, 1]]
        return np.stack([rows[:, 0], cols[:, 0], rows[:, 1], cols[:, 1]], axis=1)

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` seen by the unit at the map's centre (clipped to the image)."""
        top, bottom = self.rows[len(self.rows) // 2]
        left, right = self.cols[len(self.cols) // 2]
        return int(bottom - top), int(right - left)

    @property
    def covers_image(self) -> bool:
        """The centre unit already sees the whole input."""
        return self.size == self.input_size


def _extent(seen: torch.Tensor) -> tuple[int, int]:
    """First and last-plus-one index where a 1-D mask is true (the whole axis if none)."""
    where = torch.nonzero(seen).flatten()
    return (int(where[0]), int(where[-1]) + 1) if len(where) else (0, len(seen))


@dataclass(frozen=True)
class ReceptiveFieldOptions:
    """Which layer :func:`receptive_field` measures."""

    layer: str = ""  # a named_modules() name with maps; "": the first convolution


def has_maps(layers: Sequence[LayerInfo]) -> Compatibility:
    """Whether any layer outputs maps ``[C, H, W]``, so that units have a receptive field."""
    if any(la.spatial for la in layers):
        return COMPATIBLE
    return Compatibility(False, "This model has no layer with spatial maps, so no receptive field.")


@register(
    "feature_maps.receptive_field",
    family="feature_maps",
    title="Receptive field of a layer's map positions",
    options=ReceptiveFieldOptions,
    is_compatible=has_maps,
)
def receptive_field(
    model: nn.Module,
    batch: Batch,
    options: ReceptiveFieldOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> ReceptiveField:
    """Measures the receptive field of every position of a layer's maps in one batched pass.

    Only the shape of ``batch``'s images is read. Input ``i`` of the probe's batch asks for
    the gradient of map position ``(i, i)`` (clamped to the map), which gives row ``i``'s and
    column ``i``'s extents at once.

    Raises:
        ValueError: the layer's output is not ``[C, H, W]``.
    """
    input_shape = tuple(batch.images.shape[1:])
    layer = options.layer or default_layer(
        [la for la in list_layers(model, input_shape) if la.spatial]
    )
    probe = _positive_probe(model)
    with torch.no_grad():
        shape = layer_output(probe, torch.ones(1, *input_shape), layer).shape
    if len(shape) != 4:
        raise ValueError(f"Layer {layer!r} has no spatial maps, so no receptive field.")
    h, w = shape[2:]
    n = max(h, w)
    x = torch.ones(n, *input_shape, requires_grad=True)
    with torch.enable_grad():
        output = layer_output(probe, x, layer)
        index = torch.arange(n)
        picked = output[index, :, index.clamp(max=h - 1), index.clamp(max=w - 1)]
        (grad,) = torch.autograd.grad(picked.sum(), x)
    seen = grad.abs().sum(1) > 0
    rows = np.array([_extent(seen[i].any(1)) for i in range(h)], dtype=np.int64)
    cols = np.array([_extent(seen[i].any(0)) for i in range(w)], dtype=np.int64)
    if progress is not None:
        progress(1, 1)
    return ReceptiveField(layer, rows, cols, (int(input_shape[1]), int(input_shape[2])))


def crops(images: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cuts ``[k, C, H, W]`` images to their ``[k, 4]`` boxes: ``k`` arrays ``[C, h_i, w_i]``."""
    return tuple(
        image[:, top:bottom, left:right]
        for image, (top, left, bottom, right) in zip(images, boxes, strict=True)
    )
