"""Object attention, token norms and PCA as colour: exact against hand-made masks and sklearn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from core.activations import capture
from core.analysis import Batch
from core.attention import maps, objects
from core.attention import norms as token_norms
from core.attention.layout import TokenLayout
from core.data.datasets import make_shapes
from core.feature_maps import pca_colour
from core.models.evaluation import Predictions
from core.models.train import augment_batch
from core.models.zoo import build_model


def vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("vit-conv", (3, 32, 32), 6)


def test_shapes_masks_are_the_drawn_pixels_and_draws_are_unchanged() -> None:
    data = make_shapes(50, seed=3)
    assert data.masks is not None and data.masks.shape == (50, 32, 32)
    fg = data.masks[:, None].repeat(3, axis=1)
    assert data.masks.any(axis=(1, 2)).all()
    solid = data.factors["texture"] == 0
    for i in np.flatnonzero(solid):  # a solid object is one colour on every mask pixel
        assert np.ptp(data.images[i][fg[i]].reshape(3, -1), axis=1).max() == 0
    sub = data.subset(np.array([4, 2]))
    np.testing.assert_array_equal(sub.masks, data.masks[[4, 2]])


def test_patch_coverage_and_object_share_against_a_hand_made_mask() -> None:
    layout = TokenLayout(n_tokens=5, patch_start=1, grid=(2, 2), patch=(2, 2), image=(4, 4))
    mask = np.zeros((1, 4, 4), bool)
    mask[0, :2, :2] = True  # patch (0, 0) fully
    mask[0, 2, 2] = True  # a quarter of patch (1, 1)
    coverage = objects.patch_coverage(mask, layout)
    np.testing.assert_allclose(coverage, [[1.0, 0.0, 0.0, 0.25]])
    attention = np.array([[[0.2, 0.1, 0.3, 0.4]]])  # [N=1, layers=1, P=4], renormalised over P
    share = objects.object_share(attention * 3, coverage)
    np.testing.assert_allclose(share, [[(0.2 * 1 + 0.4 * 0.25) / 1.0]])


def test_object_attention_equals_hand_computation_on_a_vit() -> None:
    model = vit()
    data = make_shapes(12, seed=1)
    batch = Batch(data.images, data.labels, masks=data.masks)
    result = objects.object_attention(model, batch, objects.ObjectOptions(batch_size=5))
    full = maps.attention_maps(model, batch, maps.MapsOptions())
    grid = data.masks.reshape(12, 8, 4, 8, 4).mean(axis=(2, 4)).reshape(12, 64)
    cls = full.probs[:, :, :, 0, 1:].mean(axis=2)
    expected = (cls * grid[:, None]).sum(-1) / cls.sum(-1)
    np.testing.assert_allclose(result.cls_share, expected, rtol=1e-5)
    roll = full.rollout[:, :, 0, 1:]
    np.testing.assert_allclose(
        result.rollout_share, (roll * grid[:, None]).sum(-1) / roll.sum(-1), rtol=1e-5
    )
    np.testing.assert_allclose(result.area_share, data.masks.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_array_equal(result.correct, full.logits.argmax(1) == data.labels)
    summary = objects.summarise(result)
    assert summary.n == 12 and summary.cls_share.shape == (4,)
    assert "n = 12" in summary.caption()
    with pytest.raises(ValueError, match="object mask"):
        objects.object_attention(model, Batch(data.images, data.labels), objects.ObjectOptions())


def test_token_norms_outliers_and_clean_attention() -> None:
    model = vit()
    x = make_shapes(3, seed=2).images
    result = token_norms.token_norms(model, Batch(x, np.full(3, -1)), token_norms.NormOptions())
    assert result.norms.shape == (3, 4, 65) and result.layers[0] == "blocks.0"
    tokens = capture(model, x, ["blocks.2"])
    np.testing.assert_allclose(
        result.norms[:, 2], np.linalg.norm(tokens.arrays["blocks.2"], axis=-1), rtol=1e-5
    )
    assert not result.outliers[..., 0].any()  # CLS is never flagged
    norms = np.array([[[1.0, 1.1, 0.9, 1.0, 9.0]]])
    np.testing.assert_allclose(token_norms.outlier_threshold(norms, 6.0, 1.0), [1.6], rtol=1e-6)
    np.testing.assert_allclose(token_norms.outlier_threshold(norms, 6.0, 3.0), [3.0], rtol=1e-6)
    attention = np.array([0.1, 0.2, 0.3, 0.4])
    clean = token_norms.without(attention, np.array([False, False, False, True]))
    np.testing.assert_allclose(clean, [1 / 6, 2 / 6, 3 / 6, 0])


def test_pca_colours_equal_sklearn_pca_with_the_same_basis() -> None:
    model = vit()
    data = make_shapes(16, seed=4)
    batch = Batch(data.images, data.labels)
    result = pca_colour.pca_colours(model, batch, pca_colour.PcaColourOptions(layer="blocks.3"))
    tokens = capture(model, data.images, ["blocks.3"])
    x = tokens.arrays["blocks.3"][:, 1:].astype(np.float64)  # CLS dropped: [16, 64, 64]
    within = (x - x.mean(axis=1, keepdims=True)).reshape(-1, 64)  # each image's mean removed
    x = x.reshape(-1, 64)
    scores = PCA(1, svd_solver="full").fit(within).transform(within)[:, 0]
    border = np.ones((8, 8), bool)
    border[1:-1, 1:-1] = False
    if scores.reshape(16, 8, 8)[:, border].mean() > scores.mean():
        scores = -scores
    fg = scores / scores.std() > 0
    np.testing.assert_array_equal(result.foreground.reshape(-1), fg)
    rgb = PCA(3, svd_solver="full").fit(x[fg])
    projected = rgb.transform(x[fg])
    signs = np.sign((rgb.components_ * result.basis.components).sum(axis=1))
    projected *= signs  # same basis up to each component's sign
    low, high = projected.min(axis=0), projected.max(axis=0)
    expected = np.zeros((len(x), 3))
    expected[fg] = (projected - low) / (high - low)
    np.testing.assert_allclose(result.rgb.reshape(-1, 3), expected, atol=1e-4)
    np.testing.assert_allclose(result.basis.explained, rgb.explained_variance_ratio_, rtol=1e-4)
    again = pca_colour.apply_basis(model, data.images[5:7], result.basis)  # the kept basis
    np.testing.assert_allclose(again.rgb, result.rgb[5:7], atol=1e-5)


def test_pca_colour_on_cnn_layers_and_default_layers() -> None:
    torch.manual_seed(0)
    cnn = build_model("cnn", (3, 32, 32), 6)
    data = make_shapes(8, seed=5)
    batch = Batch(data.images, data.labels)
    result = pca_colour.pca_colours(cnn, batch, pca_colour.PcaColourOptions())
    assert result.basis.layer == "block3.relu2" and result.rgb.shape == (8, 8, 8, 3)
    assert ((result.rgb >= 0) & (result.rgb <= 1)).all()
    assert (result.rgb[~result.foreground] == 0).all()
    assert pca_colour.resolve_pca_layer(vit(), (3, 32, 32), "") == "blocks.3"
    mlp = build_model("mlp", (1, 8, 8), 10)
    with pytest.raises(ValueError, match="no layer with positions"):
        pca_colour.resolve_pca_layer(mlp, (1, 8, 8), "")


def test_augment_batch_is_seeded_and_label_preserving_symmetries() -> None:
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3).repeat(50, 1, 1, 1)
    a = augment_batch(x, torch.Generator().manual_seed(0))
    b = augment_batch(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    symmetries = [torch.rot90(f, k, (-2, -1)) for f in (x[0], x[0].flip(-1)) for k in range(4)]
    seen = {i for img in a[::2] for i, s in enumerate(symmetries) if torch.equal(img, s)}
    assert len(seen) == 8  # all eight, and every output is one of them
    assert all(any(torch.equal(img, s) for s in symmetries) for img in a[::2])


def test_first_correct_sample_is_the_default_view() -> None:
    probs = np.eye(3, dtype=np.float32)[[1, 2, 0]]
    wrong_first = Predictions(probs, np.array([1, 2, 0]), np.array([0, 2, 0]), 0.0, 2 / 3)
    assert wrong_first.first_correct == 1
    none_right = Predictions(probs, np.array([1, 2, 0]), np.array([0, 0, 1]), 0.0, 0.0)
    assert none_right.first_correct == 0
