"""The model zoo's contract, over its registry: every built-in architecture (and a few of
torchvision's, random weights at 32×32) runs, names its layers by ``named_modules()`` and
leaves no hook behind."""

from __future__ import annotations

import pytest
import torch

from core.activations import capture, list_layers
from core.hooks import count_hooks, split_call
from core.models.zoo import BUILTIN_ARCHITECTURES, build_model, describe

TORCHVISION = ("tv:resnet18", "tv:mobilenet_v3_small", "tv:vit_b_16")
SHAPES = ((3, 32, 32), (1, 28, 28))
CASES = [
    *((arch, shape) for arch in BUILTIN_ARCHITECTURES for shape in SHAPES),
    *((arch, SHAPES[0]) for arch in TORCHVISION),
]


@pytest.mark.parametrize(("arch", "shape"), CASES)
def test_every_architecture_keeps_the_contract(arch: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(arch, shape, 7)
    x = torch.rand(2, *shape)
    with torch.no_grad():
        assert model(x).shape == (2, 7)
    layers = list_layers(model, shape)
    names = {n for n, _ in model.named_modules()}
    assert layers and all(split_call(layer.name)[0] in names for layer in layers)
    got = capture(model, x, [layer.name for layer in layers])
    for layer in layers:
        assert got.arrays[layer.name].shape == (2, *layer.output_shape)
    assert count_hooks(model) == 0
    assert not model.training


@pytest.mark.parametrize("arch", list(BUILTIN_ARCHITECTURES))
def test_every_builtin_architecture_is_described(arch: str) -> None:
    assert describe(arch) == BUILTIN_ARCHITECTURES[arch].description
    assert len(describe(arch)) > 20


def test_a_torchvision_architecture_says_where_it_comes_from() -> None:
    assert describe("tv:resnet18") == "torchvision's resnet18"
