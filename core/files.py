"""Atomic file writes and safe weight loading.

A file is written to a temporary name in the same folder and renamed over the target, so a
reader (or a crash mid-write) sees the old file or the new one, never half of one. Weights are
read as safetensors or with ``torch.load(weights_only=True)``: a pickle that would run code is
refused with :class:`UnsafeFileError` rather than executed.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


class UnsafeFileError(ValueError):
    """A weights file that is not plain tensors (it would run code, or it is not weights)."""


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Calls ``write(tmp_path)`` and renames the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_json(path: str | Path, obj: Any) -> Path:
    """Writes ``obj`` as indented JSON to ``path`` atomically."""
    return write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str | Path) -> Any:
    """Reads a JSON file."""
    return json.loads(Path(path).read_text())


def save_state_dict(path: str | Path, state: dict[str, torch.Tensor]) -> Path:
    """Saves a state dict as safetensors, atomically."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Loads weights from ``.safetensors`` or a ``.pt``/``.pth`` state dict, without running code.

    Raises:
        UnsafeFileError: the file holds anything but tensors (a pickled object, a whole model),
            or is not a weights file at all.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, SafetensorError, RuntimeError, EOFError, ValueError) as err:
        raise UnsafeFileError(
            f"{path.name} is not a plain weights file ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]}). Save weights with "
            "safetensors or torch.save(model.state_dict()); files that would run code are refused."
        ) from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UnsafeFileError(f"{path.name} does not hold a state dict of tensors.")
    return state


def state_dict_hash(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of a state dict, in sorted key order."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
