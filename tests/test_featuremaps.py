"""Per-sample channel maps, their ordering, the depth strip and weights as images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.activations import capture, layer_output
from core.analysis import Batch
from core.feature_maps import maps as fmaps
from core.feature_maps import weights as fweights
from core.hooks import count_hooks
from core.models.zoo import build_model


def batch_of(*images: np.ndarray) -> Batch:
    """Images of unknown class as an analysis batch."""
    return Batch(np.stack(images), np.full(len(images), -1))


@pytest.fixture(scope="module")
def cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("cnn", (3, 16, 16), 4)


def test_sample_maps_match_a_batch_capture(cnn: torch.nn.Module) -> None:
    image = np.random.default_rng(0).random((3, 16, 16), dtype=np.float32)
    layers = ["block1.conv1", "block2.relu2", "head.fc"]
    other = np.zeros_like(image)
    options = fmaps.SampleMapsOptions(index=1, layers=tuple(layers))
    sample = fmaps.sample_maps(cnn, batch_of(other, image), options)
    reference = capture(cnn, image[None], layers)
    for name in layers:
        np.testing.assert_array_equal(sample.arrays[name], reference.arrays[name][0])
    np.testing.assert_array_equal(sample.logits, reference.logits[0])
    every = fmaps.sample_maps(cnn, batch_of(image), fmaps.SampleMapsOptions())
    assert "block3.relu2" in every.arrays and "head.fc" in every.arrays
    assert count_hooks(cnn) == 0


def test_other_image_size_is_resized_with_a_note() -> None:
    fitted, note = fmaps.fit_input(np.zeros((1, 40, 40), np.float32), (3, 16, 16))
    assert fitted.shape == (3, 16, 16)
    assert note is not None and "1×40×40" in note and "3×16×16" in note
    assert fmaps.fit_input(fitted, (3, 16, 16))[1] is None


def test_default_layer_unit_count_and_nan_warning(cnn: torch.nn.Module) -> None:
    from core.activations import list_layers

    layers = list_layers(cnn, (3, 16, 16))
    assert fmaps.default_layer(layers) == "block1.conv1"
    assert fmaps.default_layer(list_layers(build_model("mlp", (1, 8, 8), 3), (1, 8, 8))) == (
        "flatten"
    )
    spatial = [la for la in layers if la.spatial]
    assert fmaps.default_depth_layers(spatial)[0] == "block1.conv1"
    assert all(".conv" in name for name in fmaps.default_depth_layers(spatial))
    assert fmaps.unit_count(np.zeros((5, 2, 2))) == 5
    assert fmaps.unit_count(np.zeros((9, 7))) == 7
    activation = np.zeros((4, 2, 2), np.float32)
    assert fmaps.nan_warning(activation) is None
    activation[1, 0, 0] = np.nan
    assert fmaps.nan_warning(activation).startswith("1 of 4 channels contain NaN")
    assert fmaps.nan_warning(np.array([np.nan, 1.0])).startswith("It contains NaN")
    assert fmaps.page_count(65) == 2 and fmaps.page_count(64) == 1


def test_layer_output_stops_at_the_layer_and_removes_its_hook(cnn: torch.nn.Module) -> None:
    x = torch.rand(2, 3, 16, 16)
    out = layer_output(cnn, x, "block2.conv1")
    with torch.no_grad():
        expected = cnn.block2.conv1(cnn.block1(x))
    torch.testing.assert_close(out, expected)
    before = layer_output(cnn, x, "block1.relu1", before=True)
    torch.testing.assert_close(before, cnn.block1.bn1(cnn.block1.conv1(x)))
    assert count_hooks(cnn) == 0


def test_channel_order_and_grid_pages() -> None:
    activation = np.zeros((5, 2, 2), np.float32)
    activation[:, 0, 0] = [1.0, 3.0, 2.0, 0.0, 5.0]
    activation[3] = 1.5  # strongest mean, but only the fourth peak
    np.testing.assert_array_equal(fmaps.channel_order(activation, "mean"), [3, 4, 1, 2, 0])
    np.testing.assert_array_equal(fmaps.channel_order(activation, "max"), [4, 1, 2, 3, 0])
    np.testing.assert_array_equal(fmaps.channel_order(activation, "channel"), [0, 1, 2, 3, 4])
    grid = fmaps.channel_grid(activation, "x", "mean", page=1, per_page=2)
    np.testing.assert_array_equal(grid.channels, [1, 2])
    np.testing.assert_allclose(grid.means, [3 / 4, 2 / 4])
    np.testing.assert_allclose(grid.maxima, [3, 2])
    assert grid.total == 5 and grid.nan_channels == 0


def test_nan_channels_are_counted_and_sorted_last() -> None:
    activation = np.ones((3, 2, 2), np.float32)
    activation[0, 0, 0] = np.nan
    activation[2] = 2.0
    grid = fmaps.channel_grid(activation, "x", "mean")
    np.testing.assert_array_equal(grid.channels, [2, 1, 0])
    assert grid.nan_channels == 1
    assert np.isfinite(fmaps.channel_at_input(activation, 0, (4, 4))).all()


def test_bad_layer_and_channel_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="not channel maps"):
        fmaps.channel_grid(np.zeros(10, np.float32), "head.fc")
    with pytest.raises(ValueError, match="has 4 channels"):
        fmaps.check_channel(4, 4, "block1.conv1")
    with pytest.raises(ValueError, match="page"):
        fmaps.channel_grid(np.zeros((4, 2, 2), np.float32), "x", page=1, per_page=4)


def test_channel_at_input_is_bilinear_upsampling() -> None:
    activation = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    up = fmaps.channel_at_input(activation, 1, (4, 4))
    assert up.shape == (4, 4)
    np.testing.assert_allclose(up[0, 0], 4.0)  # corners keep the corner value
    np.testing.assert_allclose(up.mean(), activation[1].mean())


def test_depth_strip_picks_the_strongest_channel_per_layer(cnn: torch.nn.Module) -> None:
    layers = ["block1.relu2", "block2.relu2", "block3.relu2"]
    options = fmaps.SampleMapsOptions(layers=tuple(layers))
    sample = fmaps.sample_maps(cnn, batch_of(np.full((3, 16, 16), 0.5, np.float32)), options)
    strip = fmaps.depth_strip(sample, layers, "max")
    assert [m.shape for m in strip.maps] == [(16, 16), (8, 8), (4, 4)]
    for name, plane, channel in zip(layers, strip.maps, strip.channels, strict=True):
        means = sample.arrays[name].mean(axis=(1, 2))
        assert channel == int(np.argmax(means))
        np.testing.assert_array_equal(plane, sample.arrays[name][channel])
    mean_strip = fmaps.depth_strip(sample, layers, "mean")
    np.testing.assert_allclose(mean_strip.maps[0], sample.arrays[layers[0]].mean(axis=0))


def test_first_conv_filters_and_mlp_input_weights(cnn: torch.nn.Module) -> None:
    none = fweights.WeightsOptions()
    filters = fweights.first_conv_filters(cnn, batch_of(np.zeros((3, 16, 16), np.float32)), none)
    assert filters.layer == "block1.conv1" and filters.images.shape == (16, 3, 3, 3)
    np.testing.assert_array_equal(filters.weights, cnn.block1.conv1.weight.detach().numpy())
    peak = np.abs(filters.weights).reshape(16, -1).max(1)
    np.testing.assert_allclose(
        filters.images[:, 0, 0, 0], 0.5 + filters.weights[:, 0, 0, 0] / (2 * peak)
    )
    mlp = build_model("mlp", (1, 8, 8), 3)
    digits = batch_of(np.zeros((1, 8, 8), np.float32))
    weights = fweights.input_weights(mlp, digits, none)
    assert weights.layer == "fc1" and weights.images.shape == (256, 1, 8, 8)
    np.testing.assert_array_equal(
        weights.weights[5].reshape(-1), mlp.fc1.weight[5].detach().numpy()
    )
    with pytest.raises(ValueError, match="not the"):
        fweights.input_weights(cnn, batch_of(np.zeros((3, 16, 16), np.float32)), none)
    with pytest.raises(ValueError, match="no convolutional"):
        fweights.first_conv_filters(mlp, digits, none)


def test_weights_compatibility_says_why_not(cnn: torch.nn.Module) -> None:
    from core.activations import list_layers

    cnn_layers = list_layers(cnn, (3, 16, 16))
    mlp_layers = list_layers(build_model("mlp", (1, 8, 8), 3), (1, 8, 8))
    assert fweights.has_convolution(cnn_layers) and not fweights.reads_pixels(cnn_layers)
    assert fweights.reads_pixels(mlp_layers)
    assert "no convolutional layer" in fweights.has_convolution(mlp_layers).reason
