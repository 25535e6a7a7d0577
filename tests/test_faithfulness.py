"""core.attributions.faithfulness: deletion/insertion curves checked by hand on a linear model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.analysis import Batch
from core.attributions.faithfulness import (
    FaithfulnessOptions,
    deletion_insertion,
    faithfulness,
    random_pixel_orders,
)
from core.models.zoo import build_model

CONTRIB = np.array([1.0, 3.0, 0.5, 2.0])  # logit gap per pixel of the 2x2 toy image, raster order


@pytest.fixture
def linear() -> nn.Module:
    """Two logits over a 1x2x2 image; class 0 minus class 1 is ``CONTRIB . x``."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor(np.stack([CONTRIB, np.zeros(4)])))
        model[1].bias.zero_()
    return model.eval()


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def test_perfect_attribution_by_hand(linear: nn.Module) -> None:
    image = np.ones((1, 1, 2, 2), np.float32)
    perfect = (CONTRIB * image.reshape(-1)).reshape(1, 2, 2)  # weight x (input - baseline)
    curves = deletion_insertion(
        linear, image, perfect, np.array([0]), steps=4, insertion_baseline="black"
    )
    np.testing.assert_allclose(curves.fractions, [0, 0.25, 0.5, 0.75, 1])
    deletion = _sigmoid(np.array([6.5, 3.5, 1.5, 0.5, 0.0]))
    insertion = _sigmoid(np.array([0.0, 3.0, 5.0, 6.0, 6.5]))
    np.testing.assert_allclose(curves.deletion[0], deletion, rtol=1e-6)
    np.testing.assert_allclose(curves.insertion[0], insertion, rtol=1e-6)
    assert np.all(np.diff(curves.deletion[0]) < 0)
    assert np.all(np.diff(curves.insertion[0]) > 0)
    # trapezoids by hand: 0.25 * (d0/2 + d1 + d2 + d3 + d4/2)
    assert curves.deletion_auc[0] == pytest.approx(
        0.25 * (0.9984988 / 2 + 0.9706878 + 0.8175745 + 0.6224593 + 0.5 / 2), rel=1e-6
    )
    reversed_order = deletion_insertion(linear, image, -perfect, np.array([0]), steps=4)
    assert curves.deletion_auc[0] < reversed_order.deletion_auc[0]


def test_faithfulness_over_samples() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", (3, 8, 8), 3)
    images = torch.rand(3, 3, 8, 8).numpy()
    seen = []
    curves = faithfulness(
        model,
        Batch(images, np.full(3, -1)),
        FaithfulnessOptions(steps=8),
        progress=lambda i, n: seen.append(i),
    )
    assert curves.deletion.shape == curves.insertion.shape == (3, 9)
    assert curves.deletion_auc.shape == (3,) and seen == [1, 2, 3]
    assert curves.n == 3 and curves.random_deletion.shape == curves.random_insertion.shape == (3, 9)
    # nothing or everything removed: the order no longer matters
    np.testing.assert_allclose(curves.random_deletion[:, [0, -1]], curves.deletion[:, [0, -1]])
    np.testing.assert_allclose(curves.random_insertion[:, [0, -1]], curves.insertion[:, [0, -1]])
    with torch.no_grad():
        probs = model(torch.as_tensor(images)).softmax(1).numpy()
    np.testing.assert_allclose(
        curves.deletion[:, 0], probs[np.arange(3), curves.targets], rtol=1e-5
    )


def test_mismatched_maps_are_a_value_error(linear: nn.Module) -> None:
    with pytest.raises(ValueError, match="do not match"):
        deletion_insertion(linear, np.ones((1, 1, 2, 2)), np.ones((1, 3, 3)), np.array([0]))


def test_perfect_map_beats_random_beats_reversed(linear: nn.Module) -> None:
    """With a linear logit every order's curve lies between the best and the worst order."""
    image = np.ones((1, 1, 2, 2), np.float32)
    perfect = CONTRIB.reshape(1, 2, 2)
    kwargs = dict(steps=4, insertion_baseline="black", orders=8, seed=3)
    best = deletion_insertion(linear, image, perfect, np.array([0]), **kwargs)
    worst = deletion_insertion(linear, image, -perfect, np.array([0]), **kwargs)
    # the random curves do not depend on the map
    np.testing.assert_array_equal(best.random_deletion, worst.random_deletion)
    tol = 1e-7
    assert np.all(best.deletion <= best.random_deletion + tol)
    assert np.all(best.random_deletion <= worst.deletion + tol)
    assert np.all(best.insertion + tol >= best.random_insertion)
    assert np.all(best.random_insertion + tol >= worst.insertion)
    assert best.deletion_auc[0] < best.random_deletion_auc[0] < worst.deletion_auc[0]
    assert best.insertion_auc[0] > best.random_insertion_auc[0] > worst.insertion_auc[0]
    assert best.random_orders == 8 and best.seed == 3 and "8 orders" in best.baseline_text


def test_one_random_order_is_that_order(linear: nn.Module) -> None:
    image = np.ones((1, 1, 2, 2), np.float32)
    order = random_pixel_orders(4, 1, seed=5)[0]
    assert sorted(order) == [0, 1, 2, 3]
    as_map = np.empty(4)
    as_map[order] = -np.arange(4.0)  # first in the order = highest score
    kwargs = dict(steps=4, orders=1, seed=5)
    explicit = deletion_insertion(linear, image, as_map.reshape(1, 2, 2), np.array([0]), **kwargs)
    np.testing.assert_allclose(explicit.random_deletion, explicit.deletion)
    np.testing.assert_allclose(explicit.random_insertion, explicit.insertion)
    none = deletion_insertion(linear, image, as_map.reshape(1, 2, 2), np.array([0]), orders=0)
    assert np.isnan(none.random_deletion).all() and np.isnan(none.random_insertion_auc).all()


def test_random_curves_are_reproducible() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", (3, 8, 8), 3).eval()
    images = torch.rand(2, 3, 8, 8).numpy()
    heats = images.sum(1)
    targets = np.array([0, 1])
    a = deletion_insertion(model, images, heats, targets, steps=8, orders=3, seed=1)
    b = deletion_insertion(model, images, heats, targets, steps=8, orders=3, seed=1)
    c = deletion_insertion(model, images, heats, targets, steps=8, orders=3, seed=2)
    np.testing.assert_array_equal(a.random_deletion, b.random_deletion)
    np.testing.assert_array_equal(a.random_insertion, b.random_insertion)
    assert not np.allclose(a.random_deletion, c.random_deletion)
    np.testing.assert_array_equal(a.deletion, c.deletion)  # the map's curves do not move
    # one image's baseline does not depend on the others measured with it
    alone = deletion_insertion(model, images[1:], heats[1:], targets[1:], steps=8, orders=3, seed=1)
    np.testing.assert_allclose(alone.random_deletion[0], a.random_deletion[1], rtol=1e-5)


def test_curves_figure_draws_the_random_baseline(linear: nn.Module) -> None:
    from ui.figures.attributions import curves_figure

    image = np.ones((1, 1, 2, 2), np.float32)
    c = deletion_insertion(linear, image, CONTRIB.reshape(1, 2, 2), np.array([0]), steps=4)
    fig = curves_figure(
        c.fractions,
        {"Saliency": c.deletion[0]},
        {"Saliency": c.insertion[0]},
        random=(c.random_deletion[0], c.random_insertion[0]),
        random_auc=(float(c.random_deletion_auc[0]), float(c.random_insertion_auc[0])),
    )
    dashed = [t for t in fig.data if t.line.dash == "dash"]
    assert len(dashed) == 2
    assert dashed[0].name == f"random order, deletion AUC {c.random_deletion_auc[0]:.3f}"
    np.testing.assert_allclose(dashed[1].y, c.random_insertion[0])
