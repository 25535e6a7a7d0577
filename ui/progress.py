"""Long computations shared by every session: computed once, with progress, time left and stop.

:class:`Results` is a process-wide, bounded table of computed results of one analysis. Its
:meth:`Results.compute` runs a computation at most once per key at a time, passing
``progress(done, total)`` down to ``core``; any other caller of the same key waits for it,
seeing the same progress, and then gets the same result. If the computation fails or is
cancelled, nothing is kept (a waiter then computes it itself).

:func:`computed` is what ``ui.cache`` calls from a page. The computation runs in a thread of
its own, and the page's script thread watches it: it draws a progress bar where it is called,
with the fraction done and an estimate of the time left ("~12 s left"), redrawn every 0.25 s.
Every redraw is a Streamlit call, which is where Streamlit interrupts a script:

- **Stop** (the user presses Stop, or closes the tab) raises ``StopException`` there; the
  watcher leaves, and a computation nobody watches any more is cancelled: its next progress
  call raises :class:`Cancelled` inside it, which unwinds it. Nothing half-done is kept.
- **A widget change** (a rerun) raises ``RerunException``; the computation goes on for a few
  seconds (:data:`ABANDON_AFTER`), so the new run, if it still needs the same result, picks it
  up where it is instead of starting over; if it does not, the computation is cancelled.

The page script itself never blocks in a computation: it sleeps on an event between redraws,
so the running indicator and the Stop button work, and other sessions run. And no Streamlit
element is touched from inside a cached function (``st.cache_*`` replays elements; that was
the feature-visualisation crash on repeat): nothing here is an ``st.cache_*`` function.

Outside a Streamlit script (the warm-up thread, tests, benchmarks) the computation runs in the
caller's thread and nothing is drawn.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Progress = Callable[[int, int], None]
"""``progress(done, total)``, as the ``core`` functions call it."""

UPDATE_EVERY = 0.25
"""Seconds between two redraws of a progress bar (each redraw is also a stop check)."""
SHOW_AFTER = 0.3
"""A computation shorter than this shows no bar (a stored result loads in milliseconds)."""
ABANDON_AFTER = 3.0
"""Seconds a watched computation goes on after its last watcher left (a rerun's grace)."""
_MISSING = object()


class Cancelled(Exception):
    """Raised inside a computation that nobody waits for any more."""


class Flight:
    """One computation under way: how far it is, and when it ends.

    Attributes:
        label: what is being computed, for people.
        started: ``time.monotonic()`` at the start.
        done, total: the last progress reported (``total == 0``: none yet).
        expected: an estimate of the whole duration in seconds, used until progress comes.
    """

    def __init__(self, label: str, expected: float | None = None, watched: bool = False):
        self.label = label
        self.started = time.monotonic()
        self.done = 0
        self.total = 0
        self.expected = expected
        self.finished = threading.Event()
        self.watched = watched
        self.result: Any = _MISSING
        self.error: BaseException | None = None
        self.caller_left = False
        self._watchers: dict[int, float] = {}
        self._left_at = time.monotonic()
        self._stopped = False
        self._lock = threading.Lock()

    def update(self, done: int, total: int) -> None:
        """Records progress (called by the computation)."""
        self.done, self.total = done, total

    def watch(self, token: int) -> None:
        """A watcher (a page waiting for the result) is still there."""
        with self._lock:
            self._watchers[token] = time.monotonic()
            self._stopped = False

    def leave(self, token: int, *, at_once: bool) -> None:
        """A watcher left: stopped (``at_once``), or rerunning (it may come back soon)."""
        with self._lock:
            self._watchers.pop(token, None)
            if at_once:
                self._stopped = True
            else:
                self._left_at = time.monotonic()

    @property
    def abandoned(self) -> bool:
        """A watched computation that nobody watches: at once when the last watcher stopped,
        :data:`ABANDON_AFTER` seconds after one left to rerun."""
        if not self.watched:
            return False
        with self._lock:
            now = time.monotonic()
            last = max([self._left_at, *self._watchers.values()])
            if self._watchers and now - last < ABANDON_AFTER:
                return False
            return (self._stopped and not self._watchers) or now - last >= ABANDON_AFTER

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.monotonic() - self.started

    @property
    def fraction(self) -> float:
        """Fraction done in ``[0, 1]`` (from the expected duration until progress comes)."""
        if self.total > 0:
            return min(1.0, max(0.0, self.done / self.total))
        if self.expected:
            return min(0.95, self.elapsed / self.expected)
        return 0.0

    @property
    def seconds_left(self) -> float | None:
        """Estimated seconds left (from the rate so far, else the expected duration), or None."""
        fraction = self.done / self.total if self.total > 0 else 0.0
        if fraction > 0:
            return max(0.0, self.elapsed * (1 - fraction) / fraction)
        if self.expected:
            return max(1.0, self.expected - self.elapsed)
        return None

    def text(self, waiting: bool = False) -> str:
        """``"Probing layers · 40% · ~12 s left"``."""
        parts = [self.label]
        if self.total > 0 or self.expected:
            parts.append(f"{self.fraction:.0%}")
        left = self.seconds_left
        parts.append("estimating the time left…" if left is None else f"~{_duration(left)} left")
        if waiting:
            parts.append("already under way (asked for earlier)")
        return " · ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    return f"{int(seconds // 60)} min {round(seconds % 60):02d} s"


class Results(Generic[T]):
    """Computed results of one analysis, shared by the process, at most ``max_entries`` kept.

    Keys are any hashables (include the run's name and modification time). The least recently
    used result is dropped first. :meth:`ready` asks the table itself, so it stays true exactly
    as long as the result is kept.
    """

    def __init__(self, name: str, max_entries: int = 16):
        self.name = name
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._values: OrderedDict[Hashable, T] = OrderedDict()
        self._flights: dict[Hashable, Flight] = {}

    def __len__(self) -> int:
        return len(self._values)

    def ready(self, key: Hashable) -> bool:
        """The result for ``key`` is computed and kept (getting it will not wait)."""
        with self._lock:
            return key in self._values

    def get(self, key: Hashable, default: Any = None) -> T | Any:
        """The kept result for ``key``, else ``default`` (never computes)."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
            return default

    def put(self, key: Hashable, value: T) -> None:
        """Keeps ``value`` for ``key`` (dropping the least recently used beyond the bound)."""
        with self._lock:
            self._put(key, value)

    def _put(self, key: Hashable, value: T) -> None:
        self._values[key] = value
        self._values.move_to_end(key)
        while len(self._values) > self.max_entries:
            self._values.popitem(last=False)

    def flight(self, key: Hashable) -> Flight | None:
        """The computation of ``key`` under way, if any."""
        with self._lock:
            return self._flights.get(key)

    def clear(self) -> None:
        """Drops every kept result (computations under way finish and are kept)."""
        with self._lock:
            self._values.clear()

    def compute(
        self,
        key: Hashable,
        fn: Callable[[Progress], T],
        *,
        label: str = "Computing",
        expected: float | None = None,
        report: Callable[[Flight, bool], None] | None = None,
        background: bool = False,
    ) -> T:
        """The result for ``key``: kept, or computed now by ``fn(progress)``, once.

        Args:
            key: the result's key.
            fn: computes the result; calls ``progress(done, total)`` as it goes.
            label: what is computed (shown in progress text).
            expected: rough duration in seconds, for an estimate before progress comes.
            report: called as ``report(flight, waiting)``: after each progress update of a
                computation run in this thread, and every :data:`UPDATE_EVERY` seconds while
                this caller waits (``waiting``: started by another caller). An exception it
                raises ends this caller's part and propagates: it ends a computation run in
                this thread at once (nothing is kept); a watched one is cancelled once nobody
                watches it (see :class:`Flight`).
            background: run a new computation in a thread of its own and watch it (see the
                module docstring) instead of running it in this thread.
        """
        token = id(object())
        started_here = False
        while True:
            with self._lock:
                if key in self._values:
                    self._values.move_to_end(key)
                    return self._values[key]
                flight = self._flights.get(key)
                start = flight is None
                if start:
                    flight = self._flights[key] = Flight(label, expected, watched=background)
                    started_here = True
            assert flight is not None
            if start and not background:
                return self._run(key, fn, flight, report)
            if start:
                flight.watch(token)
                threading.Thread(
                    target=self._run,
                    args=(key, fn, flight, None),
                    name=f"compute {self.name}",
                    daemon=True,
                ).start()
            self._wait(flight, token, report, waiting=not started_here)
            if flight.result is not _MISSING:
                return flight.result
            if flight.error is not None and not (
                isinstance(flight.error, Cancelled) or flight.caller_left
            ):
                raise flight.error
            # cancelled, or its caller stopped: compute it again

    def _wait(
        self,
        flight: Flight,
        token: int,
        report: Callable[[Flight, bool], None] | None,
        waiting: bool,
    ) -> None:
        if flight.watched:
            flight.watch(token)
        try:
            while not flight.finished.wait(UPDATE_EVERY):
                if flight.watched:
                    flight.watch(token)
                if report is not None:
                    report(flight, waiting)
        except BaseException as err:
            flight.leave(token, at_once=not _is_rerun(err))
            raise
        flight.leave(token, at_once=False)

    def _run(
        self,
        key: Hashable,
        fn: Callable[[Progress], T],
        flight: Flight,
        report: Callable[[Flight, bool], None] | None,
    ) -> T | None:
        def progress(done: int, total: int) -> None:
            flight.update(done, total)
            if flight.abandoned:
                raise Cancelled(f"{flight.label}: nobody is waiting for it any more.")
            if report is not None:
                try:
                    report(flight, False)
                except BaseException:
                    flight.caller_left = True  # the caller stopped, not the computation failed
                    raise

        try:
            value = fn(progress)
        except BaseException as err:
            flight.error = err
            with self._lock:
                self._flights.pop(key, None)
            flight.finished.set()
            if flight.watched:  # its watchers read the error; a thread has nobody to raise to
                return None
            raise
        with self._lock:
            self._put(key, value)
            self._flights.pop(key, None)
        flight.result = value
        flight.finished.set()
        return value


def _is_rerun(err: BaseException) -> bool:
    """Streamlit's rerun request (a widget changed), as opposed to a stop."""
    return type(err).__name__ == "RerunException"


def in_script() -> bool:
    """Whether this thread runs a Streamlit script (so it can draw, and be stopped)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    return get_script_run_ctx(suppress_warning=True) is not None


class ProgressBar:
    """A progress bar drawn where it is first updated, redrawn at most every 0.25 s.

    Each redraw is a Streamlit call, so it is where the script stops or reruns when asked.
    """

    def __init__(self) -> None:
        self._slot: Any = None
        self._last = 0.0

    def show(self, flight: Flight, waiting: bool = False) -> None:
        """Draws ``flight``'s progress (throttled; nothing in its first :data:`SHOW_AFTER` s)."""
        now = time.monotonic()
        if self._slot is not None and now - self._last < UPDATE_EVERY:
            return
        if self._slot is None and flight.elapsed < SHOW_AFTER:
            return
        import streamlit as st

        if self._slot is None:
            self._slot = st.empty()
        self._last = now
        self._slot.progress(flight.fraction, text=flight.text(waiting))

    def clear(self) -> None:
        """Removes the bar (never raises: it runs while a stop may be unwinding)."""
        if self._slot is not None:
            with contextlib.suppress(Exception):
                self._slot.empty()
            self._slot = None


def computed(
    results: Results[T],
    key: Hashable,
    fn: Callable[[Progress], T],
    label: str,
    *,
    expected: float | None = None,
) -> T:
    """``results``' value for ``key``; computed by ``fn(progress)`` with a progress bar if need be.

    Called from a page script, the computation runs in its own thread while the page shows a
    bar where this is called (fraction, time left), removed when done; Stop cancels it, a
    rerun that no longer asks for it cancels it (see the module docstring). Elsewhere it just
    computes in the caller's thread.
    """
    value = results.get(key, _MISSING)
    if value is not _MISSING:
        return value
    if not in_script():
        return results.compute(key, fn, label=label, expected=expected)
    bar = ProgressBar()
    try:
        return results.compute(
            key, fn, label=label, expected=expected, report=bar.show, background=True
        )
    finally:
        bar.clear()
