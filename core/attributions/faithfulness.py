"""Does an attribution point at what the model uses? Deletion and insertion curves.

Petsiuk et al. 2018 (RISE): remove the pixels an attribution ranks highest first (replace them
by a baseline) and record the target's probability; a faithful map makes it fall fast (low
deletion AUC). Insertion starts from the baseline and puts pixels back in the same order; a
faithful map makes it rise fast (high insertion AUC). Pixels are ranked by the signed map
summed over channels, ties kept in raster order.

An area means little on its own (it depends on the model, the image and the baseline), so the
same images are also measured with pixels taken in random orders: a map is only informative
where it beats that random ranking. The random orders are seeded and shared by all images, so
the baseline is reproducible and the same whichever method is measured.

What can go wrong: a constant map (Grad-CAM at a layer with no gradient) ranks pixels in raster
order; its curves then say nothing about the method. Deletion to black can push images off the
data distribution, which is why insertion starts from a blur by default. A few random orders
give a noisy baseline for one image; it settles when averaged over samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.analysis import Batch, register
from core.attributions.methods import Baseline, MethodOptions, attribute, make_baseline
from core.models.evaluation import predict

RANDOM_ORDERS = 3
"""Random pixel orders averaged into the baseline curves by default; each costs as many
forward passes as the map's own curves."""
AVERAGED_SAMPLES = 8
"""Validation samples whose curves are averaged by default (beside the one image explained)."""
MAX_AVERAGED_SAMPLES = 64
"""The most samples a page offers to average: each costs one attribution and its curves."""


@dataclass(frozen=True)
class FaithfulnessOptions(MethodOptions):
    """Which method's maps to measure, and how (and :class:`MethodOptions` for the maps)."""

    method: str = "saliency"  # a key of METHODS (saliency applies to every model)
    steps: int = 24  # points per curve after the start
    deletion_baseline: Baseline = "black"  # what removed pixels become
    insertion_baseline: Baseline = "blur"  # what insertion starts from (stays on-distribution)
    orders: int = RANDOM_ORDERS  # random pixel orders in the baseline curves (0: none)
    order_seed: int = 0  # seed of the random orders


@dataclass(frozen=True)
class FaithfulnessCurves:
    """Deletion and insertion curves of ``N`` images, with a random-order baseline.

    Attributes:
        fractions: ``[S + 1]`` fraction of pixels removed (deletion) or added (insertion).
        deletion: ``[N, S + 1]`` target probability as top-ranked pixels are removed.
        insertion: ``[N, S + 1]`` target probability as they are added back.
        targets: ``[N]`` the classes whose probability is recorded.
        random_deletion: ``[N, S + 1]`` deletion curves in random pixel order, averaged over
            ``random_orders`` orders (NaN when there are none).
        random_insertion: ``[N, S + 1]`` the same for insertion.
        random_orders: how many random orders were averaged.
        seed: the seed of the random orders.
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    targets: np.ndarray
    random_deletion: np.ndarray
    random_insertion: np.ndarray
    random_orders: int
    seed: int

    @property
    def n(self) -> int:
        """Number of images measured."""
        return len(self.targets)

    @property
    def deletion_auc(self) -> np.ndarray:
        """``[N]`` area under each deletion curve (lower is more faithful)."""
        return np.trapezoid(self.deletion, self.fractions, axis=1)

    @property
    def insertion_auc(self) -> np.ndarray:
        """``[N]`` area under each insertion curve (higher is more faithful)."""
        return np.trapezoid(self.insertion, self.fractions, axis=1)

    @property
    def random_deletion_auc(self) -> np.ndarray:
        """``[N]`` area under each random-order deletion curve: the bar to get under."""
        return np.trapezoid(self.random_deletion, self.fractions, axis=1)

    @property
    def random_insertion_auc(self) -> np.ndarray:
        """``[N]`` area under each random-order insertion curve: the bar to get over."""
        return np.trapezoid(self.random_insertion, self.fractions, axis=1)

    @property
    def baseline_text(self) -> str:
        """One line for a caption: what the dashed baseline is."""
        return (
            f"Dashed grey: pixels taken in random order (mean of {self.random_orders} orders, "
            f"seed {self.seed}, n = {self.n:,} images); a faithful map beats it."
        )


def random_pixel_orders(pixels: int, orders: int = RANDOM_ORDERS, seed: int = 0) -> np.ndarray:
    """``[orders, pixels]`` random pixel orders (first index is taken first), reproducible."""
    rng = np.random.default_rng(seed)
    return np.array([rng.permutation(pixels) for _ in range(orders)], dtype=int).reshape(
        orders, pixels
    )


def _ranks(order: np.ndarray) -> np.ndarray:
    """``[P]`` position of each pixel in ``order [P]``."""
    rank = np.empty(len(order), dtype=int)
    rank[order] = np.arange(len(order))
    return rank


def deletion_insertion(
    model: nn.Module,
    images: np.ndarray,
    heats: np.ndarray,
    targets: np.ndarray,
    steps: int = 32,
    deletion_baseline: str = "black",
    insertion_baseline: str = "blur",
    orders: int = RANDOM_ORDERS,
    seed: int = 0,
) -> FaithfulnessCurves:
    """Deletion and insertion curves for given attribution maps, and for random orders.

    Args:
        model: a classifier returning logits.
        images: ``[N, C, H, W]`` inputs.
        heats: ``[N, H, W]`` attribution per pixel (higher = more evidence for the target).
        targets: ``[N]`` classes.
        steps: points per curve after the start; pixel ``k * H * W / steps`` ends step ``k``.
        deletion_baseline, insertion_baseline: see :func:`core.attributions.methods.make_baseline`.
        orders: random pixel orders for the baseline curves (0: none, curves are NaN).
        seed: seed of the random orders (see :func:`random_pixel_orders`).
    """
    n, _, h, w = images.shape
    if heats.shape != (n, h, w):
        raise ValueError(f"Maps of shape {heats.shape} do not match images {images.shape}.")
    if steps < 1:
        raise ValueError("The curves need at least one step.")
    if orders < 0:
        raise ValueError("The number of random orders cannot be negative.")
    counts = np.round(np.arange(steps + 1) * h * w / steps).astype(int)
    x = torch.as_tensor(images, dtype=torch.float32)
    removed = make_baseline(x, deletion_baseline).numpy()
    start = make_baseline(x, insertion_baseline).numpy()
    random_ranks = [_ranks(order) for order in random_pixel_orders(h * w, orders, seed)]
    # [1 + R, 2, N, S + 1]: the map's order then the random ones; deletion then insertion
    curves = np.full((1 + orders, 2, n, steps + 1), np.nan)
    for i in range(n):
        ranks = [_ranks(np.argsort(-heats[i].reshape(-1), kind="stable")), *random_ranks]
        masks = np.stack([r[None] < counts[:, None] for r in ranks]).reshape(-1, 1, h, w)
        deleted = np.where(masks, removed[i], images[i]).astype(np.float32)
        inserted = np.where(masks, images[i], start[i]).astype(np.float32)
        batch = np.concatenate([deleted, inserted])
        probs = predict(model, batch, np.zeros(len(batch), dtype=np.int64)).probs[:, targets[i]]
        curves[:, :, i] = probs.reshape(2, 1 + orders, steps + 1).transpose(1, 0, 2)
    if orders:
        random_deletion, random_insertion = curves[1:].mean(axis=0)
    else:
        random_deletion, random_insertion = curves[0] * np.nan
    return FaithfulnessCurves(
        fractions=counts / (h * w),
        deletion=curves[0, 0],
        insertion=curves[0, 1],
        targets=np.asarray(targets),
        random_deletion=random_deletion,
        random_insertion=random_insertion,
        random_orders=orders,
        seed=seed,
    )


@register("attributions.faithfulness", "attributions", "Faithfulness", FaithfulnessOptions)
def faithfulness(
    model: nn.Module,
    batch: Batch,
    options: FaithfulnessOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> FaithfulnessCurves:
    """Attributes each image with ``options.method`` and measures its deletion and insertion
    curves, beside random orders (:func:`deletion_insertion`).

    Args:
        model: a classifier returning logits.
        batch: ``[N, C, H, W]`` images; ``options.target=None`` explains each one's prediction.
        options: the method, the curves and the maps' :class:`MethodOptions`.
        progress: called as ``progress(done, N)`` after each image's map.
    """
    heats, targets = [], []
    for i, image in enumerate(batch.images, start=1):
        result = attribute(model, image, options.method, options)
        heats.append(result.heat)
        targets.append(result.target)
        if progress is not None:
            progress(i, len(batch))
    return deletion_insertion(
        model,
        batch.images,
        np.stack(heats),
        np.array(targets),
        options.steps,
        options.deletion_baseline,
        options.insertion_baseline,
        options.orders,
        options.order_seed,
    )
