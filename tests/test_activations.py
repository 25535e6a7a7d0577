"""Activation capture: exact values (in-place ops included), no hooks left, thread safety."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from core.activations import INPUT, capture, capture_dataset, list_layers
from core.hooks import count_hooks, forward_hooks
from core.models.zoo import build_model


def resnet18_step_by_step(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """torchvision resnet18's layer outputs computed by hand, cloning each as it is made."""
    out: dict[str, torch.Tensor] = {}

    def keep(name: str, t: torch.Tensor) -> torch.Tensor:
        out[name] = t.clone()
        return t

    with torch.no_grad():
        h = keep("conv1", model.conv1(x))
        h = keep("bn1", model.bn1(h))
        h = keep("relu", torch.relu(h))
        h = keep("maxpool", model.maxpool(h))
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            for i, block in enumerate(getattr(model, stage)):
                p = f"{stage}.{i}"
                identity = keep(f"{p}.downsample", block.downsample(h)) if block.downsample else h
                y = keep(f"{p}.conv1", block.conv1(h))
                y = keep(f"{p}.bn1", block.bn1(y))
                y = keep(f"{p}.relu", torch.relu(y))
                y = keep(f"{p}.conv2", block.conv2(y))
                y = keep(f"{p}.bn2", block.bn2(y))
                h = keep(p, torch.relu(y + identity))
                out[f"{p}.relu#2"] = out[p]  # the block's ReLU runs twice: its second call
        h = keep("avgpool", model.avgpool(h))
        keep("fc", model.fc(torch.flatten(h, 1)))
    return out


def test_resnet18_capture_equals_step_by_step() -> None:
    torch.manual_seed(0)
    model = build_model("tv:resnet18", (3, 64, 64), 10)
    for m in model.modules():  # non-trivial BatchNorm statistics, so bn outputs go negative
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(4, 3, 64, 64)
    expected = resnet18_step_by_step(model, x)
    for _ in range(2):  # the first call learns which outputs are overwritten, the second uses it
        got = capture(model, x, list(expected))
        for name, value in expected.items():
            np.testing.assert_allclose(got.arrays[name], value.numpy(), atol=1e-5, err_msg=name)
    assert (got.arrays["layer1.0.bn2"] < 0).any()  # really the pre-ReLU values


def test_a_module_called_twice_is_two_layers() -> None:
    """torchvision's BasicBlock.relu runs after bn1 and after the residual add: two layers."""
    from core.activations import layer_output

    torch.manual_seed(0)
    model = build_model("tv:resnet18", (3, 32, 32), 10)
    names = [layer.name for layer in list_layers(model, (3, 32, 32))]
    assert names.index("layer4.1.relu#2") == names.index("layer4.1.relu") + 1
    assert "layer4.1.relu#3" not in names and "conv1#2" not in names
    x = torch.rand(2, 3, 32, 32)
    got = capture(model, x, ["layer4.1.relu", "layer4.1.relu#2", "layer4.1"])
    np.testing.assert_array_equal(got.arrays["layer4.1.relu#2"], got.arrays["layer4.1"])
    assert got.arrays["layer4.1.relu"].shape == got.arrays["layer4.1.relu#2"].shape
    assert not np.allclose(got.arrays["layer4.1.relu"], got.arrays["layer4.1.relu#2"])
    with torch.no_grad():
        second = layer_output(model, x, "layer4.1.relu#2")
    np.testing.assert_allclose(second.numpy(), got.arrays["layer4.1"], atol=1e-6)
    assert count_hooks(model) == 0


def test_capture_input_and_logits() -> None:
    model = build_model("mlp", (1, 8, 8), 10)
    x = torch.rand(3, 1, 8, 8)
    got = capture(model, x, [INPUT, "fc1"])
    np.testing.assert_array_equal(got.arrays[INPUT], x.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(got.logits, model(x).numpy(), rtol=1e-6)
        np.testing.assert_allclose(got.arrays["fc1"], model.fc1(x.flatten(1)).numpy(), rtol=1e-6)


def test_no_hooks_left_after_success_and_error() -> None:
    model = build_model("cnn", (3, 32, 32), 6)
    layers = [layer.name for layer in list_layers(model, (3, 32, 32))]
    capture(model, torch.rand(2, 3, 32, 32), layers)
    assert count_hooks(model) == 0
    with pytest.raises(RuntimeError):
        capture(model, torch.rand(2, 5, 32, 32), layers)  # wrong channel count fails mid-forward
    assert count_hooks(model) == 0

    def explode(*_):
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"), forward_hooks(model, {"block2.conv1": explode}):
        model(torch.rand(1, 3, 32, 32))
    assert count_hooks(model) == 0


def test_unknown_layer_named_in_error() -> None:
    model = build_model("cnn", (3, 32, 32), 6)
    with pytest.raises(KeyError, match="block9"):
        capture(model, torch.rand(1, 3, 32, 32), ["block9.conv1"])


def test_two_threads_capture_the_same_model() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", (3, 32, 32), 6)
    inputs = [torch.rand(8, 3, 32, 32) for _ in range(2)]
    expected = [capture(model, x, ["block2.relu1"]).arrays["block2.relu1"] for x in inputs]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(5):
                got = capture(model, inputs[i], ["block2.relu1"]).arrays["block2.relu1"]
                np.testing.assert_array_equal(got, expected[i])
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and count_hooks(model) == 0


def test_capture_dataset_batches_and_memmaps(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("cnn", (3, 32, 32), 6)
    images = np.random.default_rng(0).random((70, 3, 32, 32), dtype=np.float32)
    whole = capture(model, images, ["block1.relu2", "head.fc"])
    seen = []
    batched = capture_dataset(
        model,
        images,
        ["block1.relu2", "head.fc"],
        batch_size=32,
        progress=lambda d, n: seen.append(d),
    )
    assert seen == [32, 64, 70]
    np.testing.assert_allclose(
        batched.arrays["block1.relu2"], whole.arrays["block1.relu2"], atol=1e-5
    )
    on_disk = capture_dataset(
        model, images, ["block1.relu2"], batch_size=32, float16=True, out_dir=tmp_path
    )
    array = on_disk.arrays["block1.relu2"]
    assert isinstance(array, np.memmap) and array.dtype == np.float16
    assert (tmp_path / "block1.relu2.npy").is_file()
    np.testing.assert_allclose(array, whole.arrays["block1.relu2"], rtol=2e-3, atol=2e-3)


def test_cls_pseudo_layer_is_token_zero() -> None:
    model = build_model("vit", (3, 32, 32), 6)
    x = torch.rand(2, 3, 32, 32)
    got = capture(model, x, ["blocks.1", "blocks.1 (CLS)"])
    np.testing.assert_array_equal(got.arrays["blocks.1 (CLS)"], got.arrays["blocks.1"][:, 0])
    with pytest.raises(ValueError, match="not tokens"):
        capture(build_model("cnn", (3, 32, 32), 6), x, ["block1.conv1 (CLS)"])
