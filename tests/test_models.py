"""Building models by name and loading weights safely (the zoo's contract: test_model_zoo)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.files import UnsafeFileError
from core.models.zoo import (
    WeightsMismatchError,
    build_model,
    load_weights,
    torchvision_architectures,
)


def test_torchvision_registry_lists_classifiers() -> None:
    names = torchvision_architectures()
    assert "tv:resnet18" in names and "tv:vit_b_16" in names


def test_unknown_architecture() -> None:
    with pytest.raises(ValueError, match="Unknown architecture"):
        build_model("transformer-xl", (3, 32, 32), 2)


def test_weights_round_trip_safetensors_and_pth(tmp_path: Path) -> None:
    model = build_model("cnn", (3, 32, 32), 6)
    save_file(model.state_dict(), tmp_path / "w.safetensors")
    torch.save(model.state_dict(), tmp_path / "w.pth")
    for path in (tmp_path / "w.safetensors", tmp_path / "w.pth"):
        other = build_model("cnn", (3, 32, 32), 6, weights=path)
        for key, value in model.state_dict().items():
            torch.testing.assert_close(other.state_dict()[key], value)


def test_mismatched_weights_list_the_keys(tmp_path: Path) -> None:
    save_file(build_model("cnn", (3, 32, 32), 6).state_dict(), tmp_path / "cnn.safetensors")
    with pytest.raises(WeightsMismatchError) as err:
        build_model("cnn", (3, 32, 32), 10, weights=tmp_path / "cnn.safetensors")
    assert "head.fc.weight (file (6, 64), model (10, 64))" in str(err.value)
    with pytest.raises(WeightsMismatchError) as err:
        build_model("mlp", (3, 32, 32), 6, weights=tmp_path / "cnn.safetensors")
    assert err.value.missing and err.value.unexpected


class _Exploit:
    def __reduce__(self):
        return (Path("/tmp/layerscope-pwned").touch, ())


def test_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"weight": _Exploit()}))
    model = build_model("cnn", (3, 32, 32), 6)
    with pytest.raises(UnsafeFileError, match="refused"):
        load_weights(model, path)
    assert not Path("/tmp/layerscope-pwned").exists()


def test_not_a_weights_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.safetensors"
    path.write_text("hello")
    with pytest.raises(UnsafeFileError):
        load_weights(build_model("mlp", (1, 8, 8), 10), path)


def test_pretrained_offline_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.error import URLError

    from core.models.zoo import WeightsUnavailableError

    def offline(*_args, **_kwargs):
        raise URLError("no network")

    monkeypatch.setattr("torch.hub.load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError, match=r"local \.safetensors or \.pth"):
        build_model("tv:resnet18", (3, 224, 224), 1000, pretrained=True)
