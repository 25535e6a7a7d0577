"""core.faithfulness: deletion/insertion curves checked by hand on a linear model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.attribution import AttributionOptions
from core.faithfulness import deletion_insertion, faithfulness
from core.models import build_model

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
        images,
        "saliency",
        AttributionOptions(),
        steps=8,
        progress=lambda i, n: seen.append(i),
    )
    assert curves.deletion.shape == curves.insertion.shape == (3, 9)
    assert curves.deletion_auc.shape == (3,) and seen == [1, 2, 3]
    with torch.no_grad():
        probs = model(torch.as_tensor(images)).softmax(1).numpy()
    np.testing.assert_allclose(
        curves.deletion[:, 0], probs[np.arange(3), curves.targets], rtol=1e-5
    )


def test_mismatched_maps_are_a_value_error(linear: nn.Module) -> None:
    with pytest.raises(ValueError, match="do not match"):
        deletion_insertion(linear, np.ones((1, 1, 2, 2)), np.ones((1, 3, 3)), np.array([0]))
