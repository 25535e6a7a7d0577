"""The analysis contract and the registry of every analysis.

Why it exists: pages, URL state, the audit report and the contract tests must be able to loop
over "every analysis" and, for each, know its options type, whether it applies to a model, and
how to run it, without four hand-written wiring layers. An analysis is::

    analysis(model, batch: Batch, options: XOptions, *, progress=None) -> XResult

``XOptions`` is a frozen dataclass of plain values (int, float, str, bool, ``None`` or a tuple
of these) that round-trips to URL query parameters (:func:`to_query` / :func:`from_query`) and
to JSON (:func:`to_json` / :func:`from_json`). ``XResult`` is a frozen dataclass of CPU numpy
arrays (and small plain values) with shapes in its docstring. ``is_compatible(layers)``, where
given, says whether the analysis applies to a model, with the reason a page can show.

What can go wrong: an options field of another type cannot round-trip (``TypeError`` at
registration); a URL value that does not parse falls back to the field's default and is
reported, never raised. This module imports no torch, so the fit worker can import it.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PLAIN = (int, float, str, bool, type(None))


@dataclass(frozen=True, eq=False)
class Batch:
    """The inputs an analysis sees: images and what is known about them.

    Attributes:
        images: ``[N, C, H, W]`` float32, already in the model's input shape.
        labels: ``[N]`` int64 class indices (``-1``: unknown, e.g. an uploaded image).
        factors: factor name -> ``[N]`` int64 category codes (empty for most datasets).
        class_names: ``[K]`` the classes ``labels`` index.
        masks: ``[N, H', W']`` bool, each image's object pixels where the dataset knows them
            (``shapes``), else ``None``; ``H', W'`` may differ from the images' after a resize.
    """

    images: np.ndarray
    labels: np.ndarray
    factors: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    class_names: tuple[str, ...] = ()
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class Inputs:
    """Which images of a run an analysis runs on: a key for caches, a recipe for a Batch.

    Attributes:
        split: ``"train"``, ``"val"``, ``"test"``, ``"held_out"`` (val + test) or ``"all"``.
        indices: positions within the split (``None``: all of it, or ``n`` of it).
        n: a class-stratified sample of this many (``None``: no sampling).
        seed: the sample's seed.
        upload: an uploaded image's id instead of the split (see ``core.data.uploads``).
    """

    split: str = "val"
    indices: tuple[int, ...] | None = None
    n: int | None = None
    seed: int = 0
    upload: str | None = None

    @classmethod
    def sample(cls, index: int) -> Inputs:
        """One validation sample."""
        return cls(indices=(int(index),))


@dataclass(frozen=True)
class Compatibility:
    """Whether an analysis applies to a model; ``reason`` says why not (for a page to show)."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


COMPATIBLE = Compatibility(True)


@dataclass(frozen=True)
class Analysis:
    """One registered analysis.

    Attributes:
        name: unique name, e.g. ``"attributions.sanity_check"``.
        family: the page family it belongs to (``feature_maps``, ``projections``, ...).
        title: what a person calls it.
        options: its frozen options dataclass.
        function: ``function(model, inputs, ..., options) -> result``.
        is_compatible: ``is_compatible(layers) -> Compatibility``; ``None``: every model.
    """

    name: str
    family: str
    title: str
    options: type
    function: Callable[..., Any]
    is_compatible: Callable[[Sequence[Any]], Compatibility] | None = None

    def compatible(self, layers: Sequence[Any]) -> Compatibility:
        """Whether it applies to a model with ``layers`` (from ``activations.list_layers``)."""
        return COMPATIBLE if self.is_compatible is None else self.is_compatible(layers)


REGISTRY: dict[str, Analysis] = {}


def register(
    name: str,
    family: str,
    title: str,
    options: type,
    is_compatible: Callable[[Sequence[Any]], Compatibility] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: registers ``function`` as analysis ``name`` and returns it unchanged.

    Raises:
        TypeError: ``options`` is not a frozen dataclass of plain fields.
        ValueError: ``name`` is registered already.
    """
    check_options_type(options)
    if name in REGISTRY:
        raise ValueError(f"Analysis {name!r} is registered twice.")

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        REGISTRY[name] = Analysis(name, family, title, options, function, is_compatible)
        return function

    return decorate


FAMILIES = (
    "models",
    "feature_maps",
    "projections",
    "attention",
    "attributions",
    "training",
    "audit",
    "dictionary",
    "extract",
)
"""The family folders of ``core`` that hold analyses."""


def get(name: str) -> Analysis:
    """The analysis registered as ``name`` (``"<family>.<name>"``), its family imported first.

    Raises:
        KeyError: no such analysis.
    """
    if name not in REGISTRY:
        analyses(name.split(".")[0])
    return REGISTRY[name]


def analyses(family: str | None = None) -> list[Analysis]:
    """Every analysis (of one family), in registration order.

    Imports the family folders' modules first, so the registry is complete whoever asks.
    """
    import importlib
    import pkgutil

    for name in FAMILIES if family is None else (family,):
        package = importlib.import_module(f"core.{name}")
        for info in pkgutil.iter_modules(package.__path__, f"core.{name}."):
            importlib.import_module(info.name)
    return [a for a in REGISTRY.values() if family is None or a.family == family]


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _plain_types(hint: Any) -> tuple[type, ...]:
    """The plain types a field may hold (``int | None`` -> (int, NoneType)); tuples as ``tuple``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return tuple(t for arg in typing.get_args(hint) for t in _plain_types(arg))
    if origin is tuple:
        return (tuple,)
    if origin is typing.Literal:
        return tuple({type(v) for v in typing.get_args(hint)})
    return (hint,)


def check_options_type(cls: type) -> None:
    """Raises ``TypeError`` unless ``cls`` is a frozen dataclass whose fields round-trip."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"{cls.__name__} must be a frozen dataclass.")
    for name, hint in _field_types(cls).items():
        bad = [t for t in _plain_types(hint) if t is not tuple and t not in PLAIN]
        if bad:
            raise TypeError(f"{cls.__name__}.{name}: {hint} does not round-trip to a URL.")


def _encode(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(_encode(v) for v in value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _decode(text: str, hint: Any) -> Any:
    """Parses ``text`` as a value of type ``hint``; ``ValueError`` when it does not fit."""
    kinds = _plain_types(hint)
    if text == "" and type(None) in kinds:
        return None
    if tuple in kinds:
        (item,) = typing.get_args(hint)[:1] or (str,)
        return tuple(_decode(part, item) for part in text.split(",") if part != "")
    if typing.get_origin(hint) is typing.Literal:
        allowed = {str(v): v for v in typing.get_args(hint)}
        if text not in allowed:
            raise ValueError(f"not one of {', '.join(allowed)}")
        return allowed[text]
    for kind in (bool, int, float, str):
        if kind not in kinds:
            continue
        if kind is bool:
            if text in ("true", "false"):
                return text == "true"
            continue
        try:
            return kind(text)
        except ValueError:
            continue
    raise ValueError(f"“{text}” is not a {hint}")


def to_query(options: Any, prefix: str) -> dict[str, str]:
    """``options`` as query parameters ``{f"{prefix}_{field}": text}``, defaults left out."""
    defaults = type(options)()
    return {
        f"{prefix}_{f.name}": _encode(getattr(options, f.name))
        for f in dataclasses.fields(options)
        if getattr(options, f.name) != getattr(defaults, f.name)
    }


def from_query(cls: type, params: Mapping[str, str], prefix: str) -> tuple[Any, list[str]]:
    """Options of type ``cls`` read from query parameters written by :func:`to_query`.

    Returns:
        The options (defaults where a parameter is absent or does not parse) and one message
        per parameter that did not parse.
    """
    values, problems = {}, []
    for name, hint in _field_types(cls).items():
        key = f"{prefix}_{name}"
        if key not in params:
            continue
        try:
            values[name] = _decode(params[key], hint)
        except ValueError as err:
            problems.append(f"{key}: {err}; using the default.")
    return cls(**values), problems


def to_json(options: Any) -> str:
    """``options`` as a JSON object (tuples as lists), with its type's name."""
    fields = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    return json.dumps({"type": type(options).__name__, "options": fields}, sort_keys=True)


def from_json(cls: type, text: str) -> Any:
    """The options :func:`to_json` wrote. Raises ``ValueError`` for another options type."""
    obj = json.loads(text)
    if obj.get("type") != cls.__name__:
        raise ValueError(f"JSON holds {obj.get('type')} options, not {cls.__name__}.")
    hints = _field_types(cls)
    return cls(
        **{
            k: tuple(v) if isinstance(v, list) else v
            for k, v in obj["options"].items()
            if k in hints
        }
    )
