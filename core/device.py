"""Where tensors run: the one place that picks the device.

Every function that needs a device asks :func:`pick_device`, so a machine with a GPU uses it
without any page or test knowing. ``LAYERSCOPE_DEVICE`` overrides the choice (``cpu`` keeps a
GPU machine deterministic for an audit).
"""

from __future__ import annotations

import os

import torch
from torch import nn


def pick_device(preferred: str | None = None) -> torch.device:
    """Returns the device to compute on: ``cuda``, then ``mps``, then ``cpu``.

    Args:
        preferred: ``"auto"``/``None`` for the best available, or an explicit device string.
            The ``LAYERSCOPE_DEVICE`` environment variable takes the place of ``None``.
    """
    choice = preferred or os.environ.get("LAYERSCOPE_DEVICE") or "auto"
    if choice != "auto":
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    return next(model.parameters(), torch.empty(0)).device
