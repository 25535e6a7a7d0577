"""Long computations: computed once per key, cancelled by their progress callback, nothing
half-done kept; feature visualisation can be asked for again (it used to crash on repeat)."""

from __future__ import annotations

import sys
import threading
import time

import pytest
from streamlit.testing.v1 import AppTest

from ui import progress as progress_module
from ui.progress import Flight, Results, computed


class Stop(Exception):
    """Stands in for Streamlit's StopException raised from a progress bar's update."""


class RerunException(Exception):
    """Stands in for Streamlit's RerunException (a widget changed)."""


def _steps(counter: list[int], n: int = 40, pause: float = 0.05):
    def work(progress) -> str:
        for i in range(n):
            counter.append(i)
            progress(i + 1, n)
            time.sleep(pause)
        return "whole"

    return work


def _raise_once(error: type[Exception], after: float = 0.3):
    def report(flight: Flight, waiting: bool) -> None:
        if flight.elapsed > after:
            raise error

    return report


def _wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_progress_callback_that_raises_cancels_and_keeps_nothing() -> None:
    results: Results[int] = Results("test", 4)
    calls = []

    def work(progress) -> int:
        for i in range(10):
            calls.append(i)
            progress(i + 1, 10)
        return 42

    def stop_at_three(flight: Flight, waiting: bool) -> None:
        if flight.done >= 3:
            raise Stop

    with pytest.raises(Stop):
        results.compute("k", work, report=stop_at_three)
    assert calls == [0, 1, 2]  # stopped inside the computation
    assert not results.ready("k") and results.flight("k") is None and len(results) == 0
    assert results.compute("k", work) == 42  # asked again, it runs to the end
    assert results.ready("k")


def test_the_same_key_returns_the_first_result() -> None:
    results: Results[object] = Results("test", 4)
    first = results.compute("k", lambda progress: object())
    assert results.compute("k", lambda progress: pytest.fail("computed twice")) is first
    assert computed(results, "k", lambda progress: pytest.fail("computed twice"), "x") is first


def test_concurrent_callers_compute_once_and_the_waiter_sees_progress() -> None:
    results: Results[str] = Results("test", 4)
    started, release = threading.Event(), threading.Event()
    runs: list[int] = []
    waits: list[float] = []

    def slow(progress) -> str:
        runs.append(1)
        progress(1, 2)
        started.set()
        release.wait(5)
        progress(2, 2)
        return "done"

    out: dict[str, str] = {}
    owner = threading.Thread(target=lambda: out.setdefault("owner", results.compute("k", slow)))
    owner.start()
    started.wait(5)
    waiter = threading.Thread(
        target=lambda: out.setdefault(
            "waiter",
            results.compute("k", slow, report=lambda f, waiting: waits.append(f.fraction)),
        )
    )
    waiter.start()
    time.sleep(0.6)
    release.set()
    owner.join(5)
    waiter.join(5)
    assert out == {"owner": "done", "waiter": "done"} and runs == [1]
    assert waits and waits[0] == 0.5


def test_a_waiter_computes_itself_when_the_first_caller_stops() -> None:
    results: Results[str] = Results("test", 4)
    steps: list[int] = []
    failure: list[BaseException] = []

    def first() -> None:
        try:
            results.compute("k", _steps(steps), report=_raise_once(Stop, after=0.5))
        except Stop as err:
            failure.append(err)

    owner = threading.Thread(target=first)
    owner.start()
    _wait_until(lambda: len(steps) > 0)
    assert results.compute("k", lambda progress: "mine") == "mine"
    owner.join(5)
    assert failure and len(steps) < 40


def test_an_error_of_the_computation_reaches_its_waiters() -> None:
    results: Results[str] = Results("test", 4)
    started = threading.Event()

    def broken(progress) -> str:
        started.set()
        time.sleep(0.3)
        raise ValueError("bad channel")

    def first() -> None:
        with pytest.raises(ValueError):
            results.compute("k", broken)

    owner = threading.Thread(target=first)
    owner.start()
    started.wait(5)
    with pytest.raises(ValueError, match="bad channel"):
        results.compute("k", lambda progress: pytest.fail("recomputed"))
    owner.join(5)


def test_stop_cancels_a_watched_computation_and_keeps_nothing() -> None:
    results: Results[str] = Results("test", 4)
    steps: list[int] = []
    with pytest.raises(Stop):
        results.compute("k", _steps(steps), report=_raise_once(Stop), background=True)
    _wait_until(lambda: results.flight("k") is None)
    assert results.flight("k") is None and not results.ready("k")
    assert 0 < len(steps) < 40  # it stopped part way, in its own thread


def test_a_rerun_picks_the_computation_up_and_an_abandoned_one_is_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress_module, "ABANDON_AFTER", 0.5)
    results: Results[str] = Results("test", 4)
    steps: list[int] = []
    work = _steps(steps)
    with pytest.raises(RerunException):
        results.compute("k", work, report=_raise_once(RerunException), background=True)
    assert results.compute("k", work, background=True) == "whole"  # the rerun asks again
    assert steps == list(range(40))  # one computation, not restarted
    abandoned: list[int] = []
    with pytest.raises(RerunException):
        results.compute("j", _steps(abandoned), report=_raise_once(RerunException), background=True)
    _wait_until(lambda: results.flight("j") is None)  # nobody came back for it
    assert not results.ready("j") and 0 < len(abandoned) < 40


def test_an_error_in_a_watched_computation_reaches_the_page() -> None:
    results: Results[str] = Results("test", 4)

    def broken(progress) -> str:
        raise ValueError("channel 99 is out of range")

    with pytest.raises(ValueError, match="out of range"):
        results.compute("k", broken, background=True)
    assert results.flight("k") is None and not results.ready("k")


def test_least_recently_used_results_are_dropped_and_ready_says_so() -> None:
    results: Results[int] = Results("test", 2)
    for key in "abc":
        results.compute(key, lambda progress, key=key: ord(key))
    assert [results.ready(k) for k in "abc"] == [False, True, True]


def test_time_left_comes_from_the_rate_or_the_estimate() -> None:
    flight = Flight("Probing", expected=20)
    assert "~20 s left" in flight.text() or "~19 s left" in flight.text()
    flight.started -= 10
    flight.update(1, 4)
    assert flight.fraction == 0.25 and flight.seconds_left == pytest.approx(30, abs=0.5)
    assert flight.text() == "Probing · 25% · ~30 s left"
    assert "under way" in flight.text(waiting=True)
    assert Flight("x").seconds_left is None


def _feature_vis_script() -> None:
    import streamlit as st

    from core.feature_maps import visualisation as fvis
    from ui import cache

    options = fvis.FeatureVisOptions(layer="fc1", channel=3, steps=16)
    analysis = "feature_maps.feature_vis"
    result = cache.analysis("mlp-digits", analysis, fvis.COLOUR_INPUTS, options)
    st.write(f"final {result.final:.4f}")


def test_feature_visualisation_can_be_asked_for_again() -> None:
    """The same channel again, in the same session and in another one: no replay error."""
    main = sys.modules["__main__"]  # AppTest makes its script __main__; the fit worker's
    try:  # spawned processes import __main__, so put pytest's back afterwards
        first = AppTest.from_function(_feature_vis_script, default_timeout=120)
        first.run()
        assert not first.exception
        first.run()
        assert not first.exception
        second = AppTest.from_function(_feature_vis_script, default_timeout=120)
        second.run()
        assert not second.exception
        assert first.markdown[0].value == second.markdown[0].value
    finally:
        sys.modules["__main__"] = main
