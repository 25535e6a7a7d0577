"""Does an attribution point at what the model uses? Deletion and insertion curves.

Petsiuk et al. 2018 (RISE): remove the pixels an attribution ranks highest first (replace them
by a baseline) and record the target's probability; a faithful map makes it fall fast (low
deletion AUC). Insertion starts from the baseline and puts pixels back in the same order; a
faithful map makes it rise fast (high insertion AUC). Pixels are ranked by the signed map
summed over channels, ties kept in raster order.

What can go wrong: a constant map (Grad-CAM at a layer with no gradient) ranks pixels in raster
order; its curves then say nothing about the method. Deletion to black can push images off the
data distribution, which is why insertion starts from a blur by default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.attribution import AttributionOptions, attribute, make_baseline
from core.evaluation import predict


@dataclass(frozen=True)
class FaithfulnessCurves:
    """Deletion and insertion curves of ``N`` images.

    Attributes:
        fractions: ``[S + 1]`` fraction of pixels removed (deletion) or added (insertion).
        deletion: ``[N, S + 1]`` target probability as top-ranked pixels are removed.
        insertion: ``[N, S + 1]`` target probability as they are added back.
        targets: ``[N]`` the classes whose probability is recorded.
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    targets: np.ndarray

    @property
    def deletion_auc(self) -> np.ndarray:
        """``[N]`` area under each deletion curve (lower is more faithful)."""
        return np.trapezoid(self.deletion, self.fractions, axis=1)

    @property
    def insertion_auc(self) -> np.ndarray:
        """``[N]`` area under each insertion curve (higher is more faithful)."""
        return np.trapezoid(self.insertion, self.fractions, axis=1)


def deletion_insertion(
    model: nn.Module,
    images: np.ndarray,
    heats: np.ndarray,
    targets: np.ndarray,
    steps: int = 32,
    deletion_baseline: str = "black",
    insertion_baseline: str = "blur",
) -> FaithfulnessCurves:
    """Deletion and insertion curves for given attribution maps.

    Args:
        model: a classifier returning logits.
        images: ``[N, C, H, W]`` inputs.
        heats: ``[N, H, W]`` attribution per pixel (higher = more evidence for the target).
        targets: ``[N]`` classes.
        steps: points per curve after the start; pixel ``k * H * W / steps`` ends step ``k``.
        deletion_baseline, insertion_baseline: see :func:`core.attribution.make_baseline`.
    """
    n, _, h, w = images.shape
    if heats.shape != (n, h, w):
        raise ValueError(f"Maps of shape {heats.shape} do not match images {images.shape}.")
    if steps < 1:
        raise ValueError("The curves need at least one step.")
    counts = np.round(np.arange(steps + 1) * h * w / steps).astype(int)
    x = torch.as_tensor(images, dtype=torch.float32)
    removed = make_baseline(x, deletion_baseline).numpy()
    start = make_baseline(x, insertion_baseline).numpy()
    deletion = np.empty((n, steps + 1))
    insertion = np.empty((n, steps + 1))
    for i in range(n):
        order = np.argsort(-heats[i].reshape(-1), kind="stable")
        rank = np.empty(h * w, dtype=int)
        rank[order] = np.arange(h * w)
        masks = (rank[None] < counts[:, None]).reshape(steps + 1, 1, h, w)
        deleted = np.where(masks, removed[i], images[i]).astype(np.float32)
        inserted = np.where(masks, images[i], start[i]).astype(np.float32)
        batch = np.concatenate([deleted, inserted])
        probs = predict(model, batch, np.zeros(len(batch), dtype=np.int64)).probs[:, targets[i]]
        deletion[i], insertion[i] = probs[: steps + 1], probs[steps + 1 :]
    return FaithfulnessCurves(counts / (h * w), deletion, insertion, np.asarray(targets))


def faithfulness(
    model: nn.Module,
    images: np.ndarray,
    method: str,
    options: AttributionOptions,
    steps: int = 32,
    deletion_baseline: str = "black",
    insertion_baseline: str = "blur",
    progress: Callable[[int, int], None] | None = None,
) -> FaithfulnessCurves:
    """Attributes each image with ``method`` and measures its deletion and insertion curves.

    Args:
        model: a classifier returning logits.
        images: ``[N, C, H, W]`` inputs.
        method: a key of :data:`core.attribution.METHODS`.
        options: attribution options; ``target=None`` explains each image's prediction.
        steps, deletion_baseline, insertion_baseline: as :func:`deletion_insertion`.
        progress: called as ``progress(done, N)`` after each image.
    """
    heats, targets = [], []
    for i, image in enumerate(images, start=1):
        result = attribute(model, image, method, options)
        heats.append(result.heat)
        targets.append(result.target)
        if progress is not None:
            progress(i, len(images))
    return deletion_insertion(
        model,
        images,
        np.stack(heats),
        np.array(targets),
        steps,
        deletion_baseline,
        insertion_baseline,
    )
