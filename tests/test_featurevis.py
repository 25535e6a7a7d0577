"""Feature visualisation raises its target, reads the model without changing it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.activations import layer_output
from core.feature_maps import visualisation as fvis
from core.hooks import count_hooks
from core.models.zoo import build_model

SHAPE = (3, 16, 16)
QUICK = fvis.FeatureVisConfig(steps=24, lr=0.08)


@pytest.fixture(scope="module")
def cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("cnn", SHAPE, 4)


@pytest.mark.parametrize(
    ("layer", "channel", "config"),
    [
        ("block2.conv2", 3, QUICK),
        ("block2.relu2", 7, fvis.FeatureVisConfig(steps=24, lr=0.08, parameterisation="pixel")),
        ("head.fc", 1, fvis.FeatureVisConfig(steps=24, lr=0.08, decorrelate=False)),
    ],
)
def test_optimisation_increases_the_target_activation(
    cnn: torch.nn.Module, layer: str, channel: int, config: fvis.FeatureVisConfig
) -> None:
    state = {k: v.clone() for k, v in cnn.state_dict().items()}
    calls = []
    result = fvis.visualise_channel(
        cnn, layer, channel, SHAPE, config, progress=lambda s, n, v: calls.append((s, n))
    )
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
    a = fvis.visualise_channel(cnn, "block1.conv2", 0, SHAPE, QUICK)
    b = fvis.visualise_channel(cnn, "block1.conv2", 0, SHAPE, QUICK)
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
        fvis.visualise_channel(cnn, "block1.conv1", 99, SHAPE, QUICK)
    with pytest.raises(ValueError, match="parameterisation"):
        bad = fvis.FeatureVisConfig(parameterisation="wavelet")
        fvis.visualise_channel(cnn, "block1.conv1", 0, SHAPE, bad)
    assert count_hooks(cnn) == 0
