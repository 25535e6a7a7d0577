"""One browser tab of a Streamlit app, spoken at the protocol level, for load tests.

A real tab costs a Chromium renderer; thirty of them do not fit on a small machine. The server
cannot tell the difference: a tab is a websocket on ``/_stcore/stream`` that sends
``BackMsg.rerun_script`` (a ``ClientState``: query string, page, widget values) and receives
``ForwardMsg``s (``new_session``, ``delta``, ``page_info_changed``, ``auto_rerun``, and at the
end of every script run ``script_finished``). :class:`StreamlitTab` does what the frontend does
with them: it keeps the elements of the last run (to find a widget by its label and change it),
the page and query string the server settled on, the values of the widgets it changed (sent
with every rerun, dropped when their widget disappears) and the fragments that asked to rerun
on a timer (``st.fragment(run_every=...)``), which it reruns while the user "thinks".

What can go wrong, and how it is reported (never raised): a run that raises shows an
``element.exception`` (status ``"exception"``); a run that does not reach ``script_finished`` in
time is a ``"timeout"``; a closed socket is ``"disconnected"``; an unknown page is
``"page not found"``. Runs ended early by ``st.rerun()`` are followed to the run that finishes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

FINISHED = ForwardMsg.ScriptFinishedStatus


@dataclass(frozen=True)
class Selectbox:
    """A selectbox as the last run drew it: options and value are the formatted strings."""

    id: str
    label: str
    options: tuple[str, ...]
    value: str | None


@dataclass(frozen=True)
class Widget:
    """A button or number input as the last run drew it (``integer``: a number input of ints)."""

    id: str
    kind: str
    integer: bool = False


@dataclass
class RunResult:
    """What one script run looked like from the tab.

    Attributes:
        seconds: from sending the rerun to ``script_finished`` (or to the failure).
        status: ``"ok"``, ``"exception"``, ``"timeout"``, ``"disconnected"``,
            ``"compile error"``, ``"page not found"`` or ``"widget lost"`` (a changed selectbox
            is not drawn by the run it triggered).
        problems: ``"Type: message"`` of each exception element (and the failure's reason).
        alerts: bodies of the ``st.error`` boxes drawn (shown to the user, not a failure).
        bytes: payload received during the run.
        restarts: runs ended early for a rerun (``st.rerun()``) before the one that finished.
    """

    seconds: float = 0.0
    status: str = "ok"
    problems: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    bytes: int = 0
    restarts: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class StreamlitTab:
    """One tab on one page: ``await open()``, then ``set_selectbox``/``think``, then ``close``.

    Args:
        host_port: ``"127.0.0.1:8501"``.
        timeout: seconds a run may take before it counts as a ``"timeout"``.
        on_auto_rerun: called with the :class:`RunResult` of every timed fragment rerun.
    """

    def __init__(
        self,
        host_port: str,
        timeout: float = 120.0,
        on_auto_rerun: Callable[[RunResult], None] | None = None,
        cookie: str | None = None,
    ) -> None:
        self.url = f"ws://{host_port}/_stcore/stream"
        self.headers = {"Cookie": cookie} if cookie else {}
        self.widgets: dict[str, Widget] = {}
        self.timeout = timeout
        self.on_auto_rerun = on_auto_rerun
        self.page_hash = ""
        self.query = ""
        self.selectboxes: dict[str, Selectbox] = {}
        self._ws: ClientConnection | None = None
        self._states: dict[str, WidgetState] = {}
        self._timers: dict[str, tuple[float, float]] = {}  # fragment id -> (interval, next due)
        self._page = ""
        self._broken = False

    async def open(self, page: str = "", query: str = "") -> RunResult:
        """Loads ``/<page>?<query>`` as a fresh tab: connects and runs the script once."""
        self.query = query
        self._page = page
        start = time.perf_counter()
        try:
            self._ws = await asyncio.wait_for(
                connect(
                    self.url,
                    subprotocols=["streamlit"],
                    max_size=None,
                    compression=None,
                    additional_headers=self.headers,
                ),
                self.timeout,
            )
        except (OSError, TimeoutError, WebSocketException) as err:
            self._broken = True
            return RunResult(time.perf_counter() - start, "disconnected", [repr(err)])
        return await self._rerun(ClientState(query_string=query, page_name=page), start=start)

    async def set_selectbox(self, label: str, value: str) -> RunResult:
        """Picks ``value`` (a formatted option) in the selectbox labelled ``label``; reruns."""
        box = self.selectboxes[label]
        self._states[box.id] = WidgetState(id=box.id, string_value=value)
        result = await self._rerun(
            ClientState(query_string=self.query, page_script_hash=self.page_hash)
        )
        if result.ok and label not in self.selectboxes:
            result.status = "widget lost"
            result.problems.append(f"the page no longer draws the selectbox {label!r}")
        return result

    def set_number(self, label: str, value: float) -> None:
        """Types ``value`` into the number input labelled ``label`` (sent with the next rerun:
        inside a form, that is its submit)."""
        box = self.widgets[label]
        state = WidgetState(id=box.id)
        if box.integer:
            state.int_value = int(value)
        else:
            state.double_value = float(value)
        self._states[box.id] = state

    async def click(self, label: str) -> RunResult:
        """Clicks the button labelled ``label`` (a form's submit button sends the form)."""
        trigger = WidgetState(id=self.widgets[label].id, trigger_value=True)
        return await self._rerun(
            ClientState(query_string=self.query, page_script_hash=self.page_hash), [trigger]
        )

    async def think(self, seconds: float) -> None:
        """Waits ``seconds`` like an idle user, serving the page's timed fragment reruns."""
        end = time.perf_counter() + seconds
        while not self._broken:
            now = time.perf_counter()
            due = min((d for _, d in self._timers.values()), default=end)
            if due >= end:
                await asyncio.sleep(max(0.0, end - now))
                return
            await asyncio.sleep(max(0.0, due - now))
            fragment = min(self._timers, key=lambda f: self._timers[f][1])
            interval = self._timers[fragment][0]
            result = await self._rerun(
                ClientState(
                    query_string=self.query,
                    page_script_hash=self.page_hash,
                    fragment_id=fragment,
                    is_auto_rerun=True,
                )
            )
            if fragment in self._timers:
                self._timers[fragment] = (interval, time.perf_counter() + interval)
            if self.on_auto_rerun is not None:
                self.on_auto_rerun(result)

    async def close(self) -> None:
        """Closes the socket (the tab navigates away)."""
        if self._ws is not None:
            await self._ws.close()
            self._ws = None

    async def _rerun(
        self,
        client_state: ClientState,
        triggers: list[WidgetState] | None = None,
        start: float | None = None,
    ) -> RunResult:
        """Sends one rerun request (with button ``triggers``: this run only) and reads messages
        until its run finishes."""
        start = time.perf_counter() if start is None else start
        if self._ws is None or self._broken:
            return RunResult(0.0, "disconnected", ["the tab was already broken"])
        client_state.widget_states.widgets.extend(self._states.values())
        client_state.widget_states.widgets.extend(triggers or [])
        client_state.context_info.timezone = "UTC"
        client_state.context_info.locale = "en-US"
        fragment_run = bool(client_state.fragment_id)
        result = RunResult()
        seen: dict[str, Selectbox] = {}
        try:
            await self._ws.send(BackMsg(rerun_script=client_state).SerializeToString())
            while True:
                left = start + self.timeout - time.perf_counter()
                payload = await asyncio.wait_for(self._ws.recv(), max(left, 0.001))
                result.bytes += len(payload)
                msg = ForwardMsg()
                msg.ParseFromString(payload)
                status = self._handle(msg, result, seen)
                if status is None:
                    continue
                if status == FINISHED.FINISHED_EARLY_FOR_RERUN:
                    result.restarts += 1
                    seen.clear()
                    continue
                if status == FINISHED.FINISHED_WITH_COMPILE_ERROR:
                    result.status = "compile error"
                break
        except TimeoutError:
            result.status = "timeout"
            result.problems.append(f"no script_finished within {self.timeout:.0f} s")
            self._broken = True
        except ConnectionClosed as err:
            result.status = "disconnected"
            result.problems.append(repr(err))
            self._broken = True
        result.seconds = time.perf_counter() - start
        if fragment_run:
            self.selectboxes.update(seen)
        else:
            self.selectboxes = seen
            alive = {box.id for box in seen.values()}
            self._states = {i: s for i, s in self._states.items() if i in alive}
        return result

    def _handle(
        self, msg: ForwardMsg, result: RunResult, seen: dict[str, Selectbox]
    ) -> FINISHED.ValueType | None:
        """Applies one message; returns the run's finishing status when it is the last one."""
        kind = msg.WhichOneof("type")
        if kind == "new_session" and not msg.metadata.run.fragment_ids:
            self._timers.clear()  # as the frontend: a full run's fragments announce their timers
        elif kind == "navigation":  # st.navigation names the page it ran (new_session: app.py)
            if msg.navigation.page_script_hash != self.page_hash:
                self._timers.clear()  # a new page: the old page's timers go, as in the frontend
            self.page_hash = msg.navigation.page_script_hash
        elif kind == "page_info_changed":
            self.query = msg.page_info_changed.query_string
        elif kind == "page_not_found":
            result.status = "page not found"
            result.problems.append(f"page not found: /{self._page}")
        elif kind == "auto_rerun":
            interval = msg.auto_rerun.interval
            self._timers.setdefault(
                msg.auto_rerun.fragment_id, (interval, time.perf_counter() + interval)
            )
        elif kind == "stop_auto_rerun":
            for fragment in msg.stop_auto_rerun.fragment_ids:
                self._timers.pop(fragment, None)
        elif kind == "session_event" and msg.session_event.HasField("script_compilation_exception"):
            error = msg.session_event.script_compilation_exception
            result.status = "compile error"
            result.problems.append(f"{error.type}: {error.message}")
        elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
            self._read_element(msg, result, seen)
        elif kind == "script_finished":
            return msg.script_finished
        return None

    def _read_element(self, msg: ForwardMsg, result: RunResult, seen: dict[str, Selectbox]) -> None:
        element = msg.delta.new_element
        which = element.WhichOneof("type")
        if which == "exception":
            if result.status == "ok":
                result.status = "exception"
            result.problems.append(f"{element.exception.type}: {element.exception.message}")
        elif which == "alert" and element.alert.format == Alert.ERROR:
            result.alerts.append(element.alert.body)
        elif which == "selectbox":
            box = element.selectbox
            options = tuple(box.options)
            if box.id in self._states:  # the user's choice is not echoed back
                value: str | None = self._states[box.id].string_value
            elif box.HasField("raw_value"):
                value = box.raw_value
            elif box.HasField("default") and 0 <= box.default < len(options):
                value = options[box.default]
            else:
                value = None
            seen[box.label] = Selectbox(box.id, box.label, options, value)
        elif which == "button":
            self.widgets[element.button.label] = Widget(element.button.id, "button")
        elif which == "number_input":
            box = element.number_input
            integer = box.data_type == box.INT
            self.widgets[box.label] = Widget(box.id, "number_input", integer)
