"""Attention capture (built-in and torchvision ViTs), token layouts, rollout and head statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from core.activations import capture, list_layers
from core.analysis import REGISTRY, Batch
from core.attention import layout as token_layouts
from core.attention import maps as attention
from core.attention import sites
from core.attention import statistics as stats
from core.attention.cls_tokens import ClsOptions, cls_tokens
from core.hooks import count_hooks
from core.models.zoo import SmallViT, build_model


def tiny_tv_vit() -> torchvision.models.VisionTransformer:
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
        num_classes=6,
    ).eval()  # fmt: skip


def images(n: int = 3, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def batch_of(x: torch.Tensor) -> Batch:
    return Batch(x.numpy(), np.full(len(x), -1))


def capture_attention(model: nn.Module, x: torch.Tensor) -> attention.AttentionMaps:
    return attention.attention_maps(model, batch_of(x), attention.MapsOptions())


def reference_tv_probs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Each encoder layer's weights as torch's own MultiheadAttention returns them when asked."""
    inputs: dict[int, torch.Tensor] = {}
    layers = list(model.encoder.layers)
    handles = [
        layer.ln_1.register_forward_hook(lambda m, i, o, k=k: inputs.__setitem__(k, o))
        for k, layer in enumerate(layers)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        return [
            layer.self_attention(
                inputs[k], inputs[k], inputs[k], need_weights=True, average_attn_weights=False
            )[1]
            for k, layer in enumerate(layers)
        ]


class RegisterViT(SmallViT):
    """A SmallViT with four register tokens after CLS: 1 + 4 + 64 tokens, not a square."""

    def __init__(self) -> None:
        super().__init__((3, 32, 32), 6, dim=16, depth=2, heads=2)
        self.registers = nn.Parameter(torch.randn(1, 4, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], 1) + self.pos_embed
        t = torch.cat([t[:, :1], self.registers.expand(len(x), -1, -1), t[:, 1:]], 1)
        return self.head(self.norm(self.blocks(t))[:, 0])


def test_builtin_vit_capture_shape_rows_and_hand_computation() -> None:
    torch.manual_seed(0)
    model = build_model("vit", (3, 32, 32), 6)
    x = images()
    maps = capture_attention(model, x)
    assert maps.probs.shape == (3, 4, 4, 65, 65)
    np.testing.assert_allclose(maps.probs.sum(-1), 1, atol=1e-5)
    assert maps.layers == tuple(f"blocks.{i}.attn.attn_probs" for i in range(4))
    assert maps.blocks == tuple(f"blocks.{i}" for i in range(4))
    assert maps.layout == token_layouts.TokenLayout(65, 1, (8, 8), (4, 4), (32, 32))
    with torch.no_grad():
        np.testing.assert_allclose(maps.logits, model(x).numpy(), atol=1e-6)
        tokens = capture(model, x, ["blocks.0.norm1"]).arrays["blocks.0.norm1"]
        head_dim = model.head.in_features // 4
        qkv = model.blocks[0].attn.qkv(torch.from_numpy(tokens)).reshape(3, 65, 3, 4, head_dim)
        q, k = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2)
        hand = torch.softmax(q @ k.transpose(-1, -2) / head_dim**0.5, -1).numpy()
    np.testing.assert_allclose(maps.probs[:, 0], hand, atol=1e-5)
    assert count_hooks(model) == 0


def test_tv_vit_capture_equals_torch_weights_and_hand_recomputation() -> None:
    model = tiny_tv_vit()
    x = images()
    maps = capture_attention(model, x)
    assert maps.probs.shape == (3, 2, 2, 17, 17)
    np.testing.assert_allclose(maps.probs.sum(-1), 1, atol=1e-5)
    assert maps.layout.grid == (4, 4) and maps.layout.patch == (8, 8)
    for layer, ref in enumerate(reference_tv_probs(model, x)):
        np.testing.assert_allclose(maps.probs[:, layer], ref.numpy(), atol=1e-5)
    # by hand: q = x W_q^T + b_q, k = x W_k^T + b_k, per head of 16 dims
    mha = model.encoder.layers[0].self_attention
    with torch.no_grad():
        inp = model.encoder.layers[0].ln_1(_encoder_input(model, x))
        w, b = mha.in_proj_weight, mha.in_proj_bias
        q = (inp @ w[:32].T + b[:32]).reshape(3, 17, 2, 16).permute(0, 2, 1, 3)
        k = (inp @ w[32:64].T + b[32:64]).reshape(3, 17, 2, 16).permute(0, 2, 1, 3)
        hand = torch.softmax(torch.einsum("nhqd,nhkd->nhqk", q, k) / math.sqrt(16), -1)
    np.testing.assert_allclose(maps.probs[:, 0], hand.numpy(), atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(maps.logits, model(x).numpy(), atol=1e-6)
    assert count_hooks(model) == 0


def _encoder_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The tokens entering the first encoder layer (after positions and dropout)."""
    return torch.from_numpy(capture(model, x, ["encoder.dropout"]).arrays["encoder.dropout"])


def test_tv_vit_b_16_random_weights_small_input() -> None:
    torch.manual_seed(0)
    model = build_model("tv:vit_b_16", (3, 32, 32), 6)
    x = images(2)
    maps = capture_attention(model, x)
    assert maps.probs.shape == (2, 12, 12, 5, 5)
    np.testing.assert_allclose(maps.probs.sum(-1), 1, atol=1e-5)
    assert maps.layout == token_layouts.TokenLayout(5, 1, (2, 2), (16, 16), (32, 32))
    refs = reference_tv_probs(model, x)
    for layer in (0, 11):
        np.testing.assert_allclose(maps.probs[:, layer], refs[layer].numpy(), atol=1e-5)
    assert count_hooks(model) == 0


def test_hooks_removed_after_errors() -> None:
    model = tiny_tv_vit()
    with pytest.raises(RuntimeError):
        capture_attention(model, torch.rand(1, 1, 32, 32))  # wrong channel count
    assert count_hooks(model) == 0
    with pytest.raises(ValueError, match="batch of images"):
        capture_attention(model, torch.rand(3, 32, 32))
    vit = build_model("vit", (3, 32, 32), 6)
    with pytest.raises(RuntimeError):
        capture_attention(vit, torch.rand(1, 3, 16, 16))  # positions do not fit
    assert count_hooks(vit) == 0 and count_hooks(model) == 0


def test_model_without_attention_says_so() -> None:
    cnn = build_model("cnn", (3, 32, 32), 6)
    assert not sites.has_attention(cnn)
    with pytest.raises(sites.NoAttentionError, match="no attention layers"):
        capture_attention(cnn, images(1))
    assert count_hooks(cnn) == 0


def test_register_tokens_give_a_non_square_token_count() -> None:
    torch.manual_seed(0)
    model = RegisterViT().eval()
    maps = capture_attention(model, images(2))
    layout = maps.layout
    assert maps.probs.shape == (2, 2, 2, 69, 69)
    assert (layout.patch_start, layout.grid, layout.n_patches) == (5, (8, 8), 64)
    assert [layout.token_label(t) for t in (0, 1, 4, 5, 68)] == [
        "CLS", "register 1", "register 4", "patch (row 0, col 0)", "patch (row 7, col 7)",
    ]  # fmt: skip
    pixels = attention.query_attention(maps, query=0)
    assert pixels.shape == (2, 2, 32, 32)
    np.testing.assert_allclose(pixels[0, 0, :4, 4:8], maps.probs[0, 0, 0, 0, 6])
    cls = cls_tokens(model, batch_of(images(2)), ClsOptions())
    assert cls.layers == ("blocks.0 (CLS)", "blocks.1 (CLS)") and cls.tokens.shape == (2, 2, 16)
    assert layout.patch_of(4) is None and layout.patch_of(6) == (0, 1)
    assert layout.patch_at(y=5.0, x=30.0) == layout.patch_token(1, 7) == 20
    assert layout.patch_at(y=40.0, x=0.0) is None


def test_token_layout_for_wide_images_and_uncovered_pixels() -> None:
    layout = token_layouts.token_layout(nn.Identity(), 1 + 2 * 4, (16, 32))
    assert layout == token_layouts.TokenLayout(9, 1, (2, 4), (8, 8), (16, 32))
    # a 28x28 input with 3-pixel patches: a 9x9 grid covers 27 pixels; the last row/col is NaN
    digits = build_model("vit", (1, 28, 28), 10)
    maps = capture_attention(digits, torch.rand(1, 1, 28, 28))
    assert maps.layout.grid == (9, 9) and maps.layout.patch == (3, 3)
    pixels = attention.query_attention(maps, 0)
    assert np.isnan(pixels[..., 27, :]).all() and not np.isnan(pixels[..., :27, :27]).any()


def test_rollout_of_identity_is_identity_and_matches_hand_product() -> None:
    eye = np.broadcast_to(np.eye(5, dtype=np.float32), (3, 2, 5, 5))
    np.testing.assert_allclose(
        attention.attention_rollout(eye), np.broadcast_to(np.eye(5), (3, 5, 5))
    )
    rng = np.random.default_rng(0)
    probs = rng.random((2, 3, 2, 5, 5))
    probs /= probs.sum(-1, keepdims=True)
    rolled = attention.attention_rollout(probs)
    assert rolled.shape == (2, 3, 5, 5)
    for n in range(2):
        a = [0.5 * probs[n, layer].mean(0) + 0.5 * np.eye(5) for layer in range(3)]
        np.testing.assert_allclose(rolled[n, 0], a[0], atol=1e-6)
        np.testing.assert_allclose(rolled[n, 2], a[2] @ a[1] @ a[0], atol=1e-6)
    np.testing.assert_allclose(rolled.sum(-1), 1, atol=1e-5)


def test_distance_and_entropy_by_hand() -> None:
    layout = token_layouts.TokenLayout(5, 1, (2, 2), (16, 16), (32, 32))
    self_only = np.eye(5)[None, None]
    assert stats.mean_attention_distance(self_only, layout).item() == 0
    assert stats.attention_entropy(self_only, layout).item() == 0
    uniform = np.full((1, 1, 5, 5), 0.2)
    # from any patch of a 2x2 grid of 16-pixel patches: 0, 16, 16 and 16*sqrt(2) pixels away
    expected = (0 + 16 + 16 + 16 * math.sqrt(2)) / 4
    assert stats.mean_attention_distance(uniform, layout).item() == pytest.approx(expected)
    assert stats.attention_entropy(uniform, layout).item() == pytest.approx(math.log2(5))


def test_head_statistics_batches_agree_and_cls_tokens_match_block_outputs() -> None:
    torch.manual_seed(0)
    model = build_model("vit", (3, 32, 32), 6)
    x = images(5)
    whole = stats.head_statistics(model, batch_of(x), stats.StatisticsOptions())
    done: list[int] = []
    batched = stats.head_statistics(
        model,
        batch_of(x),
        stats.StatisticsOptions(batch_size=2),
        progress=lambda d, n: done.append(d),
    )
    assert done == [2, 4, 5] and whole.distance.shape == (5, 4, 4)
    for a, b in ((whole.distance, batched.distance), (whole.entropy, batched.entropy)):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    maps = capture_attention(model, x)
    np.testing.assert_allclose(
        whole.distance, stats.mean_attention_distance(maps.probs, maps.layout), rtol=1e-5
    )
    assert 0 < whole.entropy.max() <= whole.max_entropy
    assert ((whole.extra_share >= 0) & (whole.extra_share <= 1)).all()
    cls = cls_tokens(model, batch_of(x), ClsOptions(batch_size=2))
    blocks = capture(model, x, ["blocks.0", "blocks.3"]).arrays
    np.testing.assert_allclose(cls.tokens[:, 3], blocks["blocks.3"][:, 0], atol=1e-6)
    np.testing.assert_allclose(cls.tokens[:, 0], blocks["blocks.0"][:, 0], atol=1e-6)
    assert cls.layers[3] == "blocks.3 (CLS)" == sites.cls_layers(model)[3]
    assert cls.logits.shape == (5, 6) and count_hooks(model) == 0


def test_maps_carry_rollout_and_class_probabilities() -> None:
    torch.manual_seed(0)
    model = build_model("vit", (3, 32, 32), 6)
    x = images(2)
    maps = attention.attention_maps(model, batch_of(x), attention.MapsOptions(rollout_residual=0.3))
    np.testing.assert_allclose(
        maps.rollout, attention.attention_rollout(maps.probs, 0.3), atol=1e-6
    )
    with torch.no_grad():
        expected = torch.softmax(model(x), -1).numpy()
    np.testing.assert_allclose(maps.probabilities, expected, atol=1e-6)
    assert maps.rollout_residual == 0.3 and maps.rollout.shape == (2, 4, 65, 65)


@pytest.mark.parametrize(
    ("arch", "shape", "ok"),
    [("vit", (3, 32, 32), True), ("tv:vit_b_16", (3, 32, 32), True), ("cnn", (3, 32, 32), False)],
)
def test_compatibility_from_layers_and_from_the_architecture(
    arch: str, shape: tuple[int, int, int], ok: bool
) -> None:
    model = build_model(arch, shape, 6)
    found = sites.is_compatible(list_layers(model, shape))
    assert bool(found) == ok == bool(sites.architecture_compatibility(arch, shape))
    assert ok or found.reason.startswith("This model has no attention layers: attention maps need")
    for name in ("attention.maps", "attention.head_statistics", "attention.cls_tokens"):
        assert bool(REGISTRY[name].compatible(list_layers(model, shape))) == ok
