"""The analysis contract's options codec: URL query parameters and JSON round-trip exactly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from core.analysis import check_options_type, from_json, from_query, to_json, to_query


@dataclass(frozen=True)
class Example:
    layer: str = "block1.conv1"
    channel: int = 0
    scale: float = 0.5
    shared: bool = False
    target: int | None = None
    methods: tuple[str, ...] = ("saliency", "grad_cam")
    order: Literal["channel", "mean", "max"] = "channel"


def test_defaults_leave_the_url_clean() -> None:
    assert to_query(Example(), "fm") == {}


def test_every_field_round_trips_through_the_url() -> None:
    options = Example("block2.relu2", 7, 0.25, True, 3, ("occlusion",), "max")
    query = to_query(options, "fm")
    assert query == {
        "fm_layer": "block2.relu2",
        "fm_channel": "7",
        "fm_scale": "0.25",
        "fm_shared": "true",
        "fm_target": "3",
        "fm_methods": "occlusion",
        "fm_order": "max",
    }
    assert from_query(Example, query, "fm") == (options, [])


def test_bad_url_values_fall_back_and_are_reported() -> None:
    options, problems = from_query(
        Example, {"fm_channel": "seven", "fm_order": "median", "fm_layer": "x"}, "fm"
    )
    assert options == Example(layer="x")
    assert len(problems) == 2 and "fm_channel" in problems[0] and "fm_order" in problems[1]


def test_json_round_trip_and_type_check() -> None:
    options = Example(methods=("a", "b"), target=2)
    assert from_json(Example, to_json(options)) == options

    @dataclass(frozen=True)
    class Other:
        x: int = 0

    with pytest.raises(ValueError, match="Example options"):
        from_json(Other, to_json(options))


def test_options_that_cannot_round_trip_are_refused() -> None:
    @dataclass
    class Mutable:
        x: int = 0

    @dataclass(frozen=True)
    class Nested:
        inner: dict = field(default_factory=dict)

    with pytest.raises(TypeError, match="frozen"):
        check_options_type(Mutable)
    with pytest.raises(TypeError, match="round-trip"):
        check_options_type(Nested)
