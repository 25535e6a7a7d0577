"""Which inner units carry a prediction: Layer Conductance or Layer Integrated Gradients.

Both attribute the target's score to one layer's outputs along the straight path from a
baseline to the input (Dhamdhere et al. 2018; Sundararajan et al. 2017), so a unit's value is
its share of ``f(x) - f(baseline)``. Values are summed over space (maps ``[C, h, w]``: one value
per channel) or over tokens (``[T, D]``: one value per feature).

What can go wrong: a module used twice in one forward pass (torchvision's shared ReLUs) has no
single output to attribute to; captum then raises, and the error says to pick another layer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from captum.attr import LayerConductance, LayerIntegratedGradients
from torch import nn

from core.activations import LayerInfo, list_layers
from core.analysis import Batch, register
from core.attributions.methods import MethodOptions, default_cam_layer, make_baseline
from core.device import model_device
from core.hooks import get_module, model_lock

LAYER_METHODS: dict[str, str] = {
    "conductance": "Layer Conductance",
    "integrated_gradients": "Layer Integrated Gradients",
}


@dataclass(frozen=True)
class UnitOptions(MethodOptions):
    """Which layer's units, by which method (uses ``target``, ``baseline``, ``ig_steps`` and
    ``internal_batch_size`` of :class:`MethodOptions`)."""

    layer: str = ""  # a named_modules() name; "": default_unit_layer
    method: Literal["conductance", "integrated_gradients"] = "conductance"  # LAYER_METHODS key
    top: int = 12  # units ranked in UnitAttribution.top (what the page shows)


@dataclass(frozen=True)
class UnitAttribution:
    """A layer's units ranked by their share of the target's score, for ``N`` images.

    Attributes:
        layer: the layer's ``named_modules()`` name.
        method: key of :data:`LAYER_METHODS`.
        targets: ``[N]`` the class explained for each image.
        values: ``[N, *out]`` attribution per output element (``out``: ``[C, h, w]``,
            ``[T, D]`` or ``[D]``).
        per_unit: ``[N, U]`` per channel (maps) or per feature (tokens, vectors).
        deltas: ``[N]`` ``|sum(values) - (f(x) - f(baseline))|``, the integration error.
        top: ``[k]`` the units with the largest mean ``|per_unit|``, largest first.
        seconds: wall time.
    """

    layer: str
    method: str
    targets: np.ndarray
    values: np.ndarray
    per_unit: np.ndarray
    deltas: np.ndarray
    top: np.ndarray
    seconds: float


def unit_layers(layers: Sequence[LayerInfo]) -> list[str]:
    """Layers whose units can be attributed to: leaf modules and stages with spatial maps."""
    return [i.name for i in layers if i.is_leaf or i.spatial]


def default_unit_layer(layers: Sequence[LayerInfo]) -> str:
    """Grad-CAM's default layer where there is one, else the last but one candidate layer."""
    names = unit_layers(layers)
    cam = default_cam_layer(layers)
    return cam if cam in names else names[max(0, len(names) - 2)]


def _per_unit(values: np.ndarray) -> np.ndarray:
    """``[U]`` one image's ``values`` summed over space (maps) or tokens."""
    if values.ndim == 3:
        return values.sum(axis=(1, 2))
    if values.ndim == 2:
        return values.sum(axis=0)
    return values.reshape(-1)


@register("attributions.layer_units", "attributions", "Layer units", UnitOptions)
def layer_units(
    model: nn.Module,
    batch: Batch,
    options: UnitOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> UnitAttribution:
    """Attributes the target's score for each image to the units of ``options.layer``.

    Raises:
        ValueError: unknown method or layer, a target outside the classes, or a layer captum cannot
            attribute to.
    """
    if options.method not in LAYER_METHODS:
        raise ValueError(
            f"Unknown layer method {options.method!r}: use one of {list(LAYER_METHODS)}."
        )
    layer = options.layer or default_unit_layer(list_layers(model, tuple(batch.images.shape[1:])))
    try:
        module = get_module(model, layer)
    except KeyError as err:
        raise ValueError(str(err.args[0])) from err
    explainer_type = (
        LayerConductance if options.method == "conductance" else LayerIntegratedGradients
    )
    device = model_device(model)
    start = time.perf_counter()
    values, targets, deltas = [], [], []
    for i, image in enumerate(batch.images, start=1):
        x = torch.as_tensor(image, dtype=torch.float32).to(device)[None]
        with model_lock(model):
            with torch.no_grad():
                logits = model(x)
            target = int(logits.argmax(dim=1)) if options.target is None else options.target
            if not 0 <= target < logits.shape[1]:
                raise ValueError(f"Class {target} does not exist: the model has {logits.shape[1]}.")
            try:
                value, delta = explainer_type(model, module).attribute(
                    x,
                    baselines=make_baseline(x, options.baseline),
                    target=target,
                    n_steps=options.ig_steps,
                    internal_batch_size=options.internal_batch_size,
                    return_convergence_delta=True,
                )
            except (AssertionError, RuntimeError) as err:
                raise ValueError(
                    f"Cannot attribute to {layer!r} ({err}). A module used more than once in "
                    "the forward pass has no single output: pick another layer."
                ) from err
        values.append(value.detach().float().cpu().numpy()[0])
        targets.append(target)
        deltas.append(float(delta.detach().abs().max()))
        if progress is not None:
            progress(i, len(batch))
    per_unit = np.stack([_per_unit(v) for v in values])
    top = np.argsort(-np.abs(per_unit).mean(axis=0), kind="stable")[: options.top]
    return UnitAttribution(
        layer=layer,
        method=options.method,
        targets=np.array(targets, dtype=np.int64),
        values=np.stack(values),
        per_unit=per_unit,
        deltas=np.array(deltas),
        top=top,
        seconds=time.perf_counter() - start,
    )
