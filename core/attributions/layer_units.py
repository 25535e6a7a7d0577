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
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import LayerConductance, LayerIntegratedGradients
from torch import nn

from core.attributions.methods import AttributionOptions, make_baseline
from core.device import model_device
from core.hooks import get_module, model_lock

LAYER_METHODS: dict[str, str] = {
    "conductance": "Layer Conductance",
    "integrated_gradients": "Layer Integrated Gradients",
}


@dataclass(frozen=True)
class UnitAttribution:
    """A layer's units ranked by their share of the target's score.

    Attributes:
        layer: the layer's ``named_modules()`` name.
        method: key of :data:`LAYER_METHODS`.
        target: the class explained.
        values: attribution per output element, the layer's output shape (``[C, h, w]``,
            ``[T, D]`` or ``[D]``).
        per_unit: ``[U]`` per channel (maps) or per feature (tokens, vectors).
        delta: ``|sum(values) - (f(x) - f(baseline))|``, the integration error.
        seconds: wall time.
    """

    layer: str
    method: str
    target: int
    values: np.ndarray
    per_unit: np.ndarray
    delta: float
    seconds: float

    def top_units(self, k: int) -> np.ndarray:
        """Indices of the ``k`` units with the largest ``|per_unit|``, largest first."""
        return np.argsort(-np.abs(self.per_unit), kind="stable")[:k]


def unit_attribution(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    layer: str,
    method: str = "conductance",
    options: AttributionOptions | None = None,
) -> UnitAttribution:
    """Attributes the target's score to the units of ``layer``.

    Args:
        model: a classifier returning logits, in eval mode.
        image: ``[C, H, W]`` input.
        layer: a ``named_modules()`` name.
        method: ``conductance`` or ``integrated_gradients``.
        options: uses ``target``, ``baseline``, ``ig_steps`` and ``internal_batch_size``
            (default :class:`AttributionOptions`).

    Raises:
        ValueError: unknown method or layer, or a layer captum cannot attribute to.
    """
    if method not in LAYER_METHODS:
        raise ValueError(f"Unknown layer method {method!r}: use one of {', '.join(LAYER_METHODS)}.")
    try:
        module = get_module(model, layer)
    except KeyError as err:
        raise ValueError(str(err.args[0])) from err
    options = options or AttributionOptions()
    x = torch.as_tensor(image, dtype=torch.float32).to(model_device(model))[None]
    explainer_type = LayerConductance if method == "conductance" else LayerIntegratedGradients
    start = time.perf_counter()
    with model_lock(model):
        with torch.no_grad():
            logits = model(x)
        target = int(logits.argmax(dim=1)) if options.target is None else options.target
        if not 0 <= target < logits.shape[1]:
            raise ValueError(f"Class {target} does not exist: the model has {logits.shape[1]}.")
        try:
            values, delta = explainer_type(model, module).attribute(
                x,
                baselines=make_baseline(x, options.baseline),
                target=target,
                n_steps=options.ig_steps,
                internal_batch_size=options.internal_batch_size,
                return_convergence_delta=True,
            )
        except (AssertionError, RuntimeError) as err:
            raise ValueError(
                f"Cannot attribute to {layer!r} ({err}). A module used more than once in the "
                "forward pass has no single output: pick another layer."
            ) from err
    values = values.detach().float().cpu().numpy()[0]
    if values.ndim == 3:
        per_unit = values.sum(axis=(1, 2))
    elif values.ndim == 2:
        per_unit = values.sum(axis=0)
    else:
        per_unit = values.reshape(-1)
    return UnitAttribution(
        layer=layer,
        method=method,
        target=target,
        values=values,
        per_unit=per_unit,
        delta=float(delta.detach().abs().max()),
        seconds=time.perf_counter() - start,
    )
