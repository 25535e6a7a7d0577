"""Results saved beside a run: any frozen dataclass of arrays, numbers, strings and tuples.

A run folder's ``results/`` holds one file per computed result,
``<analysis>-<key>.npz``, where ``key`` hashes the analysis's arguments. The file is an
ordinary ``.npz`` read with ``allow_pickle=False``: the result's arrays, plus one JSON string
(``__meta__``) that holds every other field, the dataclass's name, the arguments and the
SHA-256 of the weights it was computed from (``run.json``'s ``weights_sha256``). A result is
only read back for the same analysis, the same arguments and the same weights, so a run whose
weights change never shows a stale result. Writes are atomic (a temporary file in the same
folder, then ``os.replace``), so a reader sees the old file or the new one, never half of one.

What a result may hold: numpy arrays (not of dtype object), numpy scalars, ``bool``, ``int``,
``float``, ``str``, ``None``, tuples, lists, dicts with string keys, and nested dataclasses
defined in ``core``. Only classes of the ``core`` package are rebuilt on reading: the file
decides which class is built, so nothing else may be named there.

``python -m core.models.shipped --results`` fills the store of the shipped runs; the app reads it,
and writes to it for the user's own runs (never into ``assets/``).

What can go wrong: an unreadable or truncated file, or one written by another format version,
reads as missing (``None``); a result holding an unsupported type raises ``TypeError`` on save.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import os
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

FORMAT = 1
"""Version of the file layout; files of another version read as missing."""
RESULTS_DIR = "results"
_META = "__meta__"
_PACKAGE = "core"

T = TypeVar("T")


def _canonical(value: Any) -> Any:
    """Arguments as plain JSON: dataclasses as dicts, tuples as lists, numpy as Python."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            "$type": type(value).__qualname__,
            **{f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)},
        }
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"Cannot key a result by a {type(value).__name__}.")


def args_key(args: Mapping[str, Any]) -> str:
    """A short stable hash of an analysis's arguments (order of keys does not matter)."""
    text = json.dumps(_canonical(args), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def result_path(run_dir: str | Path, analysis: str, args: Mapping[str, Any]) -> Path:
    """Where :func:`save_result` puts ``analysis`` with ``args`` for the run in ``run_dir``."""
    if not analysis or not all(c.isalnum() or c in "-_" for c in analysis):
        raise ValueError(f"An analysis name is letters, digits, - and _: not {analysis!r}.")
    return Path(run_dir) / RESULTS_DIR / f"{analysis}-{args_key(args)}.npz"


def _encode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        if cls.__module__.split(".")[0] != _PACKAGE:
            raise TypeError(f"Only results defined in {_PACKAGE} can be stored, not {cls}.")
        fields = {
            f.name: _encode(getattr(value, f.name), arrays)
            for f in dataclasses.fields(value)
            if f.init
        }
        return {"$dataclass": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
    if isinstance(value, np.ndarray | np.generic):
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise TypeError("Arrays of Python objects cannot be stored (they would need pickle).")
        name = f"a{len(arrays)}"
        arrays[name] = array
        return {"$array" if isinstance(value, np.ndarray) else "$scalar": name}
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, arrays) for v in value]}
    if isinstance(value, list):
        return [_encode(v, arrays) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("Only dicts with string keys can be stored.")
        return {"$dict": {k: _encode(v, arrays) for k, v in value.items()}}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"Cannot store a {type(value).__name__} in a result.")


def _class(name: str) -> type:
    """The dataclass ``"module:qualname"`` names; when the module has moved since the result was
    stored (a refactor), the dataclass of that qualname in a loaded ``core`` module."""
    module, _, qualname = name.partition(":")
    if module.split(".")[0] != _PACKAGE:
        raise TypeError(f"Refusing to build {name}: not a {_PACKAGE} class.")
    try:
        homes = [importlib.import_module(module)]
    except ImportError:
        homes = [m for n, m in list(sys.modules.items()) if n.startswith(f"{_PACKAGE}.") and m]
    for home in homes:
        obj: Any = home
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        if (
            isinstance(obj, type)
            and dataclasses.is_dataclass(obj)
            and obj.__module__ == home.__name__
        ):
            return obj
    raise TypeError(f"{name} is not a dataclass of {_PACKAGE}.")


def _decode(value: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if "$array" in value:
        array = arrays[value["$array"]]
        array.setflags(write=False)  # results are shared by every session: read-only
        return array
    if "$scalar" in value:
        return arrays[value["$scalar"]][()]
    if "$tuple" in value:
        return tuple(_decode(v, arrays) for v in value["$tuple"])
    if "$dict" in value:
        return {k: _decode(v, arrays) for k, v in value["$dict"].items()}
    if "$dataclass" in value:
        fields = {k: _decode(v, arrays) for k, v in value["fields"].items()}
        return _class(value["$dataclass"])(**fields)
    raise ValueError(f"Unknown entry in a stored result: {sorted(value)}.")


def save_result(
    run_dir: str | Path,
    analysis: str,
    args: Mapping[str, Any],
    weights_sha256: str,
    result: Any,
) -> Path:
    """Writes ``result`` for ``analysis(args)`` of the run in ``run_dir``, atomically.

    Args:
        run_dir: the run's folder.
        analysis: a name for the kind of result (letters, digits, ``-``, ``_``).
        args: everything the result depends on besides the weights (JSON-able values,
            dataclasses, tuples); include a version number when the algorithm may change.
        weights_sha256: the weights' hash (``RunInfo.weights_sha256``).
        result: a dataclass instance (see the module docstring for what it may hold).

    Returns:
        The file written.

    Raises:
        TypeError: the result holds something that cannot be stored without pickle.
        ValueError: no weights hash, or a bad analysis name.
        OSError: the folder cannot be written.
    """
    if not weights_sha256:
        raise ValueError("A result is stored against the weights' hash; this run has none.")
    path = result_path(run_dir, analysis, args)
    arrays: dict[str, np.ndarray] = {}
    meta = {
        "format": FORMAT,
        "analysis": analysis,
        "args": _canonical(args),
        "weights_sha256": weights_sha256,
        "result": _encode(result, arrays),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays, **{_META: np.array(json.dumps(meta))})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def load_result(
    run_dir: str | Path,
    analysis: str,
    args: Mapping[str, Any],
    weights_sha256: str,
    expected: type[T] | None = None,
) -> T | None:
    """The stored result of ``analysis(args)`` for these weights, or ``None``.

    ``None`` when there is no such file, when it was computed for other weights or other
    arguments, when it is unreadable, or when it is not an ``expected`` instance.
    """
    if not weights_sha256:
        return None
    try:
        path = result_path(run_dir, analysis, args)
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data[_META][()]))
            if (
                meta.get("format") != FORMAT
                or meta.get("analysis") != analysis
                or meta.get("weights_sha256") != weights_sha256
                or meta.get("args") != _canonical(args)
            ):
                return None
            arrays = {name: data[name] for name in data.files if name != _META}
        result = _decode(meta["result"], arrays)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ImportError,
            zipfile.BadZipFile, json.JSONDecodeError, EOFError):  # fmt: skip
        return None
    if expected is not None and not isinstance(result, expected):
        return None
    return result


def stored_results(run_dir: str | Path) -> list[Path]:
    """The result files in a run's store, by name."""
    folder = Path(run_dir) / RESULTS_DIR
    return sorted(folder.glob("*.npz")) if folder.is_dir() else []
