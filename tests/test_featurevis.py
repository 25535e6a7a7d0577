"""Feature visualisation raises its target, reads the model without changing it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from core.activations import layer_output
from core.analysis import Batch
from core.feature_maps import visualisation as fvis
from core.hooks import count_hooks
from core.models.zoo import build_model

SHAPE = (3, 16, 16)
QUICK = fvis.FeatureVisOptions(steps=24, lr=0.08)
NO_IMAGES = Batch(np.zeros((0, *SHAPE), np.float32), np.zeros(0, np.int64))
"""Only the input shape: colour is decorrelated with ImageNet's covariance."""


def visualise(
    model: torch.nn.Module, layer: str, channel: int, options: fvis.FeatureVisOptions, **kw
) -> fvis.FeatureVis:
    """The registered analysis on ``layer``'s ``channel``."""
    unit = dataclasses.replace(options, layer=layer, channel=channel)
    return fvis.feature_vis(model, NO_IMAGES, unit, **kw)


@pytest.fixture(scope="module")
def cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("cnn", SHAPE, 4)


@pytest.mark.parametrize(
    ("layer", "channel", "config"),
    [
        ("block2.conv2", 3, QUICK),
        ("block2.relu2", 7, fvis.FeatureVisOptions(steps=24, lr=0.08, parameterisation="pixel")),
        ("head.fc", 1, fvis.FeatureVisOptions(steps=24, lr=0.08, decorrelate=False)),
    ],
)
def test_optimisation_increases_the_target_activation(
    cnn: torch.nn.Module, layer: str, channel: int, config: fvis.FeatureVisOptions
) -> None:
    state = {k: v.clone() for k, v in cnn.state_dict().items()}
    calls = []
    result = visualise(cnn, layer, channel, config, progress=lambda s, n: calls.append((s, n)))
    assert result.final > result.start
    random_images = torch.rand(32, *SHAPE)
    with torch.no_grad():
        out = layer_output(cnn, random_images, layer)
    assert result.final > out[:, channel].reshape(32, -1).mean(1).max()  # beats 32 random inputs
    assert result.image.shape == SHAPE
    assert result.image.min() >= 0 and result.image.max() <= 1
    assert result.objective.shape == (config.steps,)
    assert calls[-1] == (config.steps, config.steps) and len(calls) == config.steps
    assert count_hooks(cnn) == 0
    assert all(p.grad is None for p in cnn.parameters())
    for key, value in cnn.state_dict().items():
        torch.testing.assert_close(value, state[key])


def test_same_seed_same_image(cnn: torch.nn.Module) -> None:
    a = visualise(cnn, "block1.conv2", 0, QUICK)
    b = visualise(cnn, "block1.conv2", 0, QUICK)
    np.testing.assert_array_equal(a.image, b.image)


def test_colour_sqrt_squares_to_the_covariance() -> None:
    rng = np.random.default_rng(0)
    mix = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.2, 0.0, 1.0]])
    images = np.einsum("dc,nchw->ndhw", mix, rng.random((50, 3, 4, 4)))
    root = fvis.colour_sqrt(images.astype(np.float32))
    covariance = np.cov(images.transpose(1, 0, 2, 3).reshape(3, -1))
    np.testing.assert_allclose(root @ root.T, covariance, rtol=1e-4, atol=1e-6)


def test_bad_inputs_are_refused(cnn: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="no channel 99"):
        visualise(cnn, "block1.conv1", 99, QUICK)
    with pytest.raises(ValueError, match="parameterisation"):
        bad = fvis.FeatureVisOptions(parameterisation="wavelet")
        visualise(cnn, "block1.conv1", 0, bad)
    assert count_hooks(cnn) == 0


def test_colour_comes_from_the_batch_and_the_default_layer_is_the_first_conv(
    cnn: torch.nn.Module,
) -> None:
    grey = Batch(np.full((4, *SHAPE), 0.5, np.float32), np.full(4, -1))
    quick = dataclasses.replace(QUICK, steps=2)
    result = fvis.feature_vis(cnn, grey, quick)
    assert result.layer == "block1.conv1" and result.channel == 0
    assert np.isfinite(result.image).all()  # grey images: ImageNet's colour basis instead
