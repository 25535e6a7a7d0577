"""Predictions and the numbers a home page shows: accuracy, loss, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.activations import model_device
from core.hooks import model_lock


@dataclass(frozen=True)
class Predictions:
    """Model outputs over a set of samples.

    Attributes:
        probs: ``[N, K]`` softmax probabilities.
        predicted: ``[N]`` argmax class.
        labels: ``[N]`` true class.
        loss: mean cross-entropy.
        accuracy: fraction of ``predicted == labels``.
    """

    probs: np.ndarray
    predicted: np.ndarray
    labels: np.ndarray
    loss: float
    accuracy: float


def predict(
    model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 512
) -> Predictions:
    """Runs ``model`` over ``images [N, C, H, W]`` and scores it against ``labels [N]``."""
    device = model_device(model)
    logits = []
    with model_lock(model), torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.as_tensor(images[start : start + batch_size]).to(device)
            logits.append(model(batch).float().cpu())
    out = torch.cat(logits) if logits else torch.empty(0, 0)
    target = torch.as_tensor(labels)
    loss = float(F.cross_entropy(out, target)) if len(target) else float("nan")
    probs = out.softmax(dim=1).numpy()
    predicted = probs.argmax(axis=1)
    accuracy = float((predicted == labels).mean()) if len(labels) else float("nan")
    return Predictions(probs, predicted, np.asarray(labels), loss, accuracy)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``[K, K]`` counts: row = true class, column = predicted class."""
    return np.bincount(labels * num_classes + predicted, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )
