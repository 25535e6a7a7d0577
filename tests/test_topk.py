"""Top-k retrieval against brute force; receptive fields against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.activations import capture
from core.analysis import Batch
from core.feature_maps import top_examples as topk
from core.hooks import count_hooks
from core.models.zoo import build_model

SHAPE = (3, 32, 32)


def batch_of(images: np.ndarray) -> Batch:
    """Images of unknown class as an analysis batch."""
    return Batch(images, np.full(len(images), -1))


def receptive_field(
    model: torch.nn.Module, layer: str, shape: tuple[int, ...]
) -> topk.ReceptiveField:
    """The registered analysis on one blank image of ``shape``."""
    blank = batch_of(np.zeros((1, *shape), np.float32))
    return topk.receptive_field(model, blank, topk.ReceptiveFieldOptions(layer))


@pytest.fixture(scope="module")
def cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("cnn", SHAPE, 4)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).random((40, *SHAPE), dtype=np.float32)


@pytest.mark.parametrize("layer", ["block2.relu2", "head.fc"])
@pytest.mark.parametrize("ranking", ["max", "mean"])
def test_top_k_equals_brute_force(
    cnn: torch.nn.Module, images: np.ndarray, layer: str, ranking: str
) -> None:
    options = topk.ChannelStatsOptions(layer=layer, batch_size=16)
    stats = topk.channel_stats(cnn, batch_of(images), options)
    full = capture(cnn, images, [layer]).arrays[layer]
    full = full.reshape(len(full), full.shape[1], -1)
    score = full.max(2) if ranking == "max" else full.mean(2)
    for channel in (0, 3):
        top = topk.top_k(stats, channel, k=5, ranking=ranking)
        expected = np.argsort(-score[:, channel], kind="stable")[:5]
        np.testing.assert_array_equal(top.indices, expected)
        np.testing.assert_allclose(top.scores, score[expected, channel], rtol=1e-5)
        flat = full[top.indices, channel].argmax(1)
        shape = stats.map_shape
        np.testing.assert_array_equal(top.positions, np.stack(np.unravel_index(flat, shape), 1))
    assert count_hooks(cnn) == 0


def test_nan_scores_rank_last_and_bad_channel_is_refused() -> None:
    maxima = np.array([[1.0], [np.nan], [3.0]], np.float32)
    stats = topk.ChannelStats("x", maxima, maxima, np.zeros((3, 1), np.int64), (1, 1))
    np.testing.assert_array_equal(topk.top_k(stats, 0, k=3).indices, [2, 0, 1])
    with pytest.raises(ValueError, match="no channel 1"):
        topk.top_k(stats, 1)


def _hand_rf(layer: str) -> int:
    """TinyCNN by hand: 3x3 convs (stride 1) add 2 * jump, 2x2 pools add 1 * jump, double it."""
    size, jump = 1, 1
    for block in (1, 2, 3):
        for part in ("conv1", "conv2", "pool"):
            size += 2 * jump if part != "pool" else jump
            jump *= 2 if part == "pool" else 1
            if layer == f"block{block}.{part}":
                return size
    raise AssertionError(layer)


@pytest.mark.parametrize(
    "layer", ["block1.conv1", "block1.conv2", "block1.pool", "block2.conv1", "block2.pool"]
)
def test_receptive_field_matches_the_hand_computation(cnn: torch.nn.Module, layer: str) -> None:
    rf = receptive_field(cnn, layer, SHAPE)
    side = _hand_rf(layer)  # 3, 5, 6, 10, 16
    assert rf.size == (side, side)
    assert not rf.covers_image


def test_receptive_boxes_and_crops(cnn: torch.nn.Module, images: np.ndarray) -> None:
    rf = receptive_field(cnn, "block2.conv2", SHAPE)  # 14x14, jump 2, 16x16 map
    boxes = rf.boxes(np.array([[8, 8], [0, 0], [15, 3]]))
    # Map row r of block2.conv2 sees pooled rows r-2..r+2 (two 3x3 convs), so block1 rows
    # 2r-4..2r+5, so input rows 2r-6..2r+7 (two more 3x3 convs), clipped to 0..31.
    np.testing.assert_array_equal(boxes[0], [10, 10, 24, 24])
    np.testing.assert_array_equal(boxes[1], [0, 0, 8, 8])
    np.testing.assert_array_equal(boxes[2], [24, 0, 32, 14])
    cut = topk.crops(images[:3], boxes)
    assert [c.shape for c in cut] == [(3, 14, 14), (3, 8, 8), (3, 8, 14)]
    np.testing.assert_array_equal(cut[0], images[0][:, 10:24, 10:24])
    assert rf.size == (14, 14)
    whole = receptive_field(cnn, "block3.pool", SHAPE)
    assert whole.size == (30, 30)  # 36 by hand, clipped by the 32-pixel image at the centre
    assert count_hooks(cnn) == 0


def test_receptive_field_of_a_resnet_with_skips() -> None:
    model = build_model("tv:resnet18", (3, 64, 64), 4)
    # conv1 7x7/2 -> 7; maxpool 3x3/2 -> 7 + 2*2 = 11; layer1 four 3x3 at jump 4 -> 11 + 32 = 43.
    assert receptive_field(model, "conv1", (3, 64, 64)).size == (7, 7)
    assert receptive_field(model, "maxpool", (3, 64, 64)).size == (11, 11)
    assert receptive_field(model, "layer1", (3, 64, 64)).size == (43, 43)
    with pytest.raises(ValueError, match="no spatial maps"):
        receptive_field(model, "fc", (3, 64, 64))


def test_default_layers_and_compatibility(cnn: torch.nn.Module, images: np.ndarray) -> None:
    from core.activations import list_layers

    stats = topk.channel_stats(cnn, batch_of(images[:4]), topk.ChannelStatsOptions())
    assert stats.layer == "block1.conv1" and stats.maxima.shape == (4, 16)
    assert receptive_field(cnn, "", SHAPE).layer == "block1.conv1"
    mlp = build_model("mlp", (1, 8, 8), 3)
    assert not topk.has_maps(list_layers(mlp, (1, 8, 8)))
    assert topk.has_maps(list_layers(cnn, SHAPE))
