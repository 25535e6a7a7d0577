"""The analysis contract, checked for every registered analysis (cases generated, as captum's
``test_hook_removal.py`` does): no hook left after a normal run or after an error inside the
forward pass; the result is a frozen dataclass of numpy arrays and plain values; the same seed
gives the same numbers. A meta-test fails when a public ``core`` function that takes a model is
neither registered nor exempted with a reason.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import core
from core.activations import list_layers
from core.analysis import REGISTRY, Analysis, Batch, analyses
from core.hooks import count_hooks
from core.models.zoo import build_model

FOUNDATION_BLOCKS = {
    "core.activations.list_layers": "the model summary every analysis starts from",
    "core.activations.capture": "the capture primitive analyses are built on",
    "core.activations.capture_dataset": "capture over many inputs, batch by batch",
    "core.activations.layer_output": "one layer's output with gradients, for building blocks",
    "core.device.model_device": "where a model's parameters are",
    "core.hooks.model_lock": "serialises hooked passes on one model",
    "core.hooks.get_module": "a submodule by name",
    "core.hooks.forward_hooks": "the only way hooks are registered: removed in finally",
    "core.hooks.count_hooks": "the check these tests make",
}
MODELS = {  # tiny models, one per kind of architecture an analysis may need
    "cnn": (3, 16, 16),
    "mlp": (1, 8, 8),
    "vit": (3, 16, 16),
}


def all_core_modules() -> Iterator[Any]:
    """Imports every module under ``core`` (which also fills the registry)."""
    for info in pkgutil.walk_packages(core.__path__, "core."):
        if info.name.endswith("__main__"):
            continue
        yield importlib.import_module(info.name)


MODULES = list(all_core_modules())


def tiny(arch: str) -> tuple[nn.Module, Batch]:
    """A tiny random model of ``arch`` and a batch of 12 random images for it (3 classes)."""
    torch.manual_seed(0)
    shape = MODELS[arch]
    model = build_model(arch, shape, 3).eval()
    rng = np.random.default_rng(0)
    batch = Batch(
        images=rng.random((12, *shape), dtype=np.float32),
        labels=np.tile([0, 1, 2], 4),
        factors={"colour": np.tile([0, 1], 6)},
        class_names=("a", "b", "c"),
        masks=rng.random((12, *shape[1:])) > 0.7,
    )
    return model, batch


def compatible_model(analysis: Analysis) -> tuple[nn.Module, Batch]:
    for arch, shape in MODELS.items():
        model, batch = tiny(arch)
        if analysis.compatible(list_layers(model, shape)):
            return model, batch
    pytest.skip(f"{analysis.name}: no tiny model is compatible")


def plain_or_arrays(value: Any, where: str) -> None:
    """Fails unless ``value`` is numpy arrays, plain values, or frozen dataclasses of them."""
    if dataclasses.is_dataclass(value):
        assert type(value).__dataclass_params__.frozen, f"{where}: not frozen"
        for field in dataclasses.fields(value):
            plain_or_arrays(getattr(value, field.name), f"{where}.{field.name}")
    elif isinstance(value, np.ndarray):
        assert value.dtype != object, f"{where}: an object array"
    elif isinstance(value, tuple | list):
        for i, item in enumerate(value):
            plain_or_arrays(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), f"{where}: a non-string key"
            plain_or_arrays(item, f"{where}[{key!r}]")
    else:
        assert value is None or isinstance(value, bool | int | float | str | np.generic), (
            f"{where}: a {type(value).__name__}, not an array or a plain value"
        )


def same(a: Any, b: Any, where: str) -> None:
    if dataclasses.is_dataclass(a):
        for field in dataclasses.fields(a):
            if field.name not in ("seconds", "elapsed"):
                same(getattr(a, field.name), getattr(b, field.name), f"{where}.{field.name}")
    elif isinstance(a, np.ndarray):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=where)
    elif isinstance(a, tuple | list):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        for key in a:
            same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, where


def every_analysis() -> list[Analysis]:
    return sorted(analyses(), key=lambda a: a.name)


def test_every_family_registers_analyses() -> None:
    families = {a.family for a in REGISTRY.values()}
    assert families >= {"feature_maps", "projections", "attention", "attributions"}, families


@pytest.mark.parametrize("analysis", every_analysis(), ids=lambda a: a.name)
def test_result_is_frozen_arrays_and_no_hook_is_left(analysis: Analysis) -> None:
    model, batch = compatible_model(analysis)
    options = analysis.options()
    result = analysis.function(model, batch, options)
    assert count_hooks(model) == 0
    plain_or_arrays(result, analysis.name)
    again = analysis.function(model, batch, options)
    same(result, again, analysis.name)  # same seed, same numbers
    assert count_hooks(model) == 0


class Boom(RuntimeError):
    """Raised from inside a forward pass."""


@pytest.mark.parametrize("analysis", every_analysis(), ids=lambda a: a.name)
def test_no_hook_is_left_after_an_error_in_the_forward_pass(analysis: Analysis) -> None:
    model, batch = compatible_model(analysis)
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    victim = leaves[len(leaves) // 2]

    calls = []

    def explode(*_args: Any, **_kwargs: Any) -> None:
        calls.append(1)
        raise Boom("inside the forward pass")

    victim.forward = explode
    try:
        analysis.function(model, batch, analysis.options())
    except (Boom, ValueError, RuntimeError):
        pass
    else:
        assert not calls, "the error inside the forward pass was swallowed"
    assert count_hooks(model) == 0


def takes_a_model(function: Any) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return "model" in parameters


def exempted() -> dict[str, str]:
    """Every exemption: the foundation's, and each family's ``BUILDING_BLOCKS``."""
    out = dict(FOUNDATION_BLOCKS)
    for module in MODULES:
        if module.__name__.count(".") == 1 and hasattr(module, "BUILDING_BLOCKS"):
            for name, reason in module.BUILDING_BLOCKS.items():
                full = name if name.startswith("core.") else f"{module.__name__}.{name}"
                out[full] = reason
    return out


def unregistered(modules: list[Any]) -> list[str]:
    registered = {a.function for a in REGISTRY.values()}
    allowed = exempted()
    missing = []
    for module in modules:
        for name, function in vars(module).items():
            if name.startswith("_") or not inspect.isfunction(function):
                continue
            if function.__module__ != module.__name__ or not takes_a_model(function):
                continue
            full = f"{module.__name__}.{name}"
            if function not in registered and full not in allowed:
                missing.append(full)
    return missing


def test_every_public_function_taking_a_model_is_registered_or_exempted() -> None:
    missing = unregistered(MODULES)
    assert not missing, (
        "Register these as analyses (core.analysis.register) or add them, with a reason, to "
        f"their family's BUILDING_BLOCKS: {missing}"
    )
    assert all(reason.strip() for reason in exempted().values())


def test_the_meta_test_catches_a_new_unregistered_analysis() -> None:
    import types

    module = types.ModuleType("core.feature_maps.new_idea")
    exec(  # a public function taking a model, neither registered nor exempted
        "def saliency_of_everything(model, batch, options):\n    return None\n",
        module.__dict__,
    )
    assert unregistered([module]) == ["core.feature_maps.new_idea.saliency_of_everything"]
