"""The sidebar every page shares: which run, which checkpoint, which sample, and the page links.

Why it exists: the selected run and sample must hold across every page and every hop, and a
link must reopen the same view. Each page script draws the sidebar itself (Streamlit's AppTest
runs only the page script), so the sidebar's widgets are new widgets on every page, and
Streamlit forgets a widget's value when a page without it runs. The choice is therefore kept
under keys of our own (``_run``, ``_sample``), seeded into the widgets on each page, and written
to the query string (``?run=<name>&sample=<i>``), which the sidebar's page links carry along.
A checkpoint (``?ckpt=0.5``: half-way through the first epoch) makes every page show the run
at that checkpoint: :attr:`Selection.run` is then a run reference (``cnn-shapes@ckpt=0.5``,
see :func:`core.models.runs.split_ref`), which every cache keys on.

Precedence: the URL on a session's first page (a shared link), or when it names another run
than the one this session last wrote (a link from inside the app, e.g. "open in attention");
otherwise the session's own choice. Unknown values fall back to the default with a toast.
``sample`` indexes the run's validation split.

Page widgets keep their own state with Streamlit's ``bind="query-params"`` (the value lives in
the URL under the widget's key) and ``persist_state="session"`` (kept while another page runs):
see :data:`VIEW`. When the run changes, the widgets whose options come from the model
(:func:`scoped`) are reset to their defaults.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import streamlit as st

from core.analysis import Inputs
from core.data import uploads
from core.models.runs import DEFAULT_RUN, RunError, run_ref, split_ref
from ui import cache, navigation

VIEW: dict[str, Any] = {"bind": "query-params", "persist_state": "session"}
"""Keyword arguments that put a page widget's value in the URL and keep it across pages."""


@dataclass(frozen=True)
class Selection:
    """What the sidebar selected: a run, a validation sample, and maybe an uploaded image.

    Attributes:
        run: the run's name, or a run reference when a checkpoint is selected.
        sample: index into the run's validation split.
        image: an uploaded image's id (``core.uploads.store_image``) used instead of the sample.
    """

    run: str
    sample: int
    image: str | None = None

    @property
    def base(self) -> str:
        """The run's name, without a checkpoint."""
        return split_ref(self.run)[0]

    @property
    def checkpoint(self) -> str | None:
        """The checkpoint's URL value (``0.5``), or ``None`` for the final weights."""
        epoch = split_ref(self.run)[1]
        return None if epoch is None else f"{epoch:g}"

    @property
    def inputs(self) -> Inputs:
        """The one image every page looks at, as analysis inputs."""
        return Inputs(upload=self.image) if self.image else Inputs.sample(self.sample)

    @property
    def stem(self) -> str:
        """What a downloaded file's name says about the input: ``sample12`` or ``image-3fa2…``."""
        return f"image-{self.image[:8]}" if self.image else f"sample{self.sample}"

    @property
    def described(self) -> str:
        """The input in words: ``validation sample 12`` or ``your uploaded image``."""
        return "your uploaded image" if self.image else f"validation sample {self.sample}"

    @property
    def query(self) -> dict[str, str]:
        """The selection as query parameters, for links."""
        image = {"image": self.image} if self.image else {}
        ckpt = {"ckpt": self.checkpoint} if self.checkpoint else {}
        return {"run": self.base, "sample": str(self.sample), **ckpt, **image}


def _adopt_url_run(names: list[str]) -> None:
    """Takes the URL's run when it is new to this session (a shared link or an in-app link)."""
    wanted = st.query_params.get("run")
    if wanted is None or wanted == st.session_state.get("_run_written"):
        return
    if wanted in names:
        if wanted != st.session_state.get("_run"):
            _set_run(wanted, sample=None)
        return
    fallback = st.session_state.get("_run")
    if fallback not in names:
        fallback = DEFAULT_RUN if DEFAULT_RUN in names else names[0]
    st.toast(f"No run named “{wanted}”: showing {fallback}.", icon="⚠️")
    _set_run(fallback, sample=None)
    st.session_state["_run_written"] = wanted  # toast once per bad link


def _set_run(name: str, sample: int | None) -> None:
    """Makes ``name`` the session's run; forgets every view setting that depended on the old one.

    Those settings live in the session (reset by :func:`scoped` when next drawn) and in the
    URL, where only a page switch drops them: :func:`sidebar` reopens the current page with
    just the run and sample.
    """
    if st.session_state.get("_run") not in (None, name):
        st.session_state["_run_epoch"] = st.session_state.get("_run_epoch", 0) + 1
        st.session_state["_run_changed"] = True
    st.session_state["_run"] = name
    if st.session_state.get("_ckpt_run") != name:
        st.session_state.pop("_ckpt", None)
    if sample is not None:
        st.session_state["_sample"] = sample
    else:
        st.session_state.pop("_sample", None)


def scoped(key: str, default: Any) -> dict[str, Any]:
    """Keyword arguments for a view widget whose options come from the run (a layer, a channel,
    a class): like :data:`VIEW`, and the widget goes back to ``default`` when the run changes.

    Setting the value (rather than forgetting it) is what makes the browser show the default.
    """
    epochs = st.session_state.setdefault("_scoped_epoch", {})
    epoch = st.session_state.get("_run_epoch", 0)
    if epochs.get(key, epoch) != epoch and key in st.session_state:
        st.session_state[key] = default  # drawn before under another run
    epochs[key] = epoch
    return {"key": key, **VIEW}


def _on_run_picked() -> None:
    _set_run(st.session_state["run"], sample=None)


def _on_sample_picked() -> None:
    st.session_state["_sample"] = int(st.session_state["sample"])


def _initial_sample(run: str, n_val: int) -> int:
    """The URL's sample on a session's first page (or after a run change by link), else the
    run's first correctly classified validation sample."""
    raw = st.query_params.get("sample")
    default = cache.predictions(run, "val").first_correct
    if raw is None:
        return default
    try:
        wanted = int(raw)
    except ValueError:
        wanted = -1
    if 0 <= wanted < n_val:
        return wanted
    st.toast(f"Sample {raw} does not exist: showing {default}.", icon="⚠️")
    return default


def _run_label(info: Any) -> str:
    accuracy = f" · {info.test_accuracy:.1%}" if info.test_accuracy is not None else ""
    return f"{info.name} · {info.arch} on {info.dataset.name}{accuracy}"


FINAL = "final"
"""The checkpoint picker's value for the run's final weights."""


def checkpoint_labels(name: str) -> dict[str, str]:
    """A run's checkpoints as URL value -> label (``init``, ``epoch 1/8``, ``epoch 2``), in
    training order, then :data:`FINAL` -> ``final weights``."""
    labels = {c.value: c.label for c in cache.checkpoints(split_ref(name)[0])}
    return labels | {FINAL: "final weights"}


def _adopt_url_checkpoint(run: str, values: list[str]) -> None:
    """Takes the URL's ``ckpt`` when it is new to this session (a link); toasts a bad one."""
    raw = st.query_params.get("ckpt")
    if raw is None or raw == st.session_state.get("_ckpt_written"):
        return
    st.session_state["_ckpt_written"] = raw
    match = next((v for v in values if v != FINAL and float(v) == _number(raw)), None)
    if match is None:
        st.toast(f"Run {run} has no checkpoint “{raw}”: showing its final weights.", icon="⚠️")
    set_checkpoint(run, match)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def set_checkpoint(run: str, value: str | None) -> None:
    """Selects checkpoint ``value`` of ``run`` (``None`` or :data:`FINAL`: the final weights)."""
    st.session_state["_ckpt"] = None if value in (None, FINAL) else value
    st.session_state["_ckpt_run"] = split_ref(run)[0]


def selected_checkpoint() -> str:
    """The session's checkpoint as a picker value (:data:`FINAL` when none)."""
    return st.session_state.get("_ckpt") or FINAL


def _on_checkpoint_picked() -> None:
    set_checkpoint(st.session_state["_run"], st.session_state["ckpt"])


def _checkpoint_picker(where: Any, run: str) -> str:
    """The sidebar's checkpoint slider (only for a run with checkpoints); returns the run
    reference every page then shows."""
    labels = checkpoint_labels(run)
    values = list(labels)
    _adopt_url_checkpoint(run, values)
    if len(values) == 1:
        return run
    if selected_checkpoint() not in values:
        set_checkpoint(run, None)
    st.session_state["ckpt"] = selected_checkpoint()
    where.select_slider(
        "Checkpoint",
        values,
        key="ckpt",
        format_func=labels.__getitem__,
        on_change=_on_checkpoint_picked,
        help="Every page shows the model as it was at this point of training.",
    )
    chosen = st.session_state.get("_ckpt")
    return run_ref(run, chosen)


def page_links(selection: Selection) -> None:
    """The sidebar's links to every page; each carries the selection along."""
    for path, title, icon in navigation.PAGES:
        st.sidebar.page_link(path, label=title, icon=icon, query_params=selection.query)


def _clear_image() -> None:
    st.session_state["_image"] = None


def _own_image(where: Any) -> str | None:
    """The uploader for an image of one's own; returns the id of the image in use, if any.

    The image is kept on the server under its hash (``?image=<id>``), so it stays in use on
    every page and in a copied link; a link naming an unknown image falls back with a toast.
    """
    wanted = st.query_params.get("image")
    if wanted and wanted != st.session_state.get("_image_written"):
        st.session_state["_image_written"] = wanted
        try:
            uploads.load_image(wanted)
            st.session_state["_image"] = wanted
        except uploads.UploadError as err:
            st.toast(f"{err} Showing the validation sample.", icon="⚠️")
    image = st.session_state.get("_image")
    with where.expander("Use your own image", expanded=image is not None):
        file = st.file_uploader(
            "Image file", type=["png", "jpg", "jpeg", "bmp", "webp"], key="own_image_file"
        )
        if file is not None and file.file_id != st.session_state.get("_image_file"):
            st.session_state["_image_file"] = file.file_id
            try:
                image = st.session_state["_image"] = uploads.store_image(file.name, file.getvalue())
            except uploads.UploadError as err:
                st.error(str(err))
        if image is not None:
            st.button("Back to the validation sample", on_click=_clear_image, key="own_image_off")
    return image


def sidebar() -> Selection | None:
    """Draws the page links, the run and sample pickers; returns the selection.

    Returns:
        The selection, or ``None`` when there is no run at all.
    """
    infos, broken = cache.run_scan()
    names = [r.name for r in infos]
    if not names:
        page_links(Selection(DEFAULT_RUN, 0))
        st.sidebar.warning("No runs yet: train one on the Home page.")
        return None
    _adopt_url_run(names)
    if (gone := st.session_state.get("_run")) not in names:
        fallback = DEFAULT_RUN if DEFAULT_RUN in names else names[0]
        if gone is not None:  # deleted (by another session?) while this one showed it
            st.session_state["_run_gone"] = f"Run “{gone}” is gone (deleted?): showing {fallback}."
        _set_run(fallback, sample=None)
    st.session_state["run"] = st.session_state["_run"]  # the widget follows our key
    labels = {r.name: _run_label(r) for r in infos}
    run_slot, ckpt_slot, sample_slot, image_slot, upload_slot = (
        st.sidebar.container() for _ in range(5)
    )
    if broken:
        with st.sidebar.expander(f"{len(broken)} run folder(s) could not be read"):
            for err in broken:
                st.caption(str(err))
    run = run_slot.selectbox(
        "Run", names, key="run", format_func=labels.get, on_change=_on_run_picked
    )
    if st.session_state.pop("_run_changed", False):
        keep = {"image": st.session_state["_image"]} if st.session_state.get("_image") else {}
        st.switch_page(navigation.current_page(), query_params={"run": run, **keep})
    if gone_notice := st.session_state.pop("_run_gone", None):
        st.sidebar.warning(gone_notice, icon=":material/warning:")
    try:
        n_val = len(cache.loaded_run(run).splits.val)
    except RunError as err:
        st.error(f"{err} Pick another run in the sidebar.")
        st.stop()
    if "_sample" not in st.session_state:
        st.session_state["_sample"] = _initial_sample(run, n_val)
    st.session_state["_sample"] = min(int(st.session_state["_sample"]), n_val - 1)
    st.session_state["sample"] = st.session_state["_sample"]
    sample = int(
        sample_slot.number_input(
            "Sample (validation split)",
            0,
            n_val - 1,
            key="sample",
            on_change=_on_sample_picked,
            help="Index into the run's held-out validation images.",
        )
    )
    image = _own_image(upload_slot)
    selection = Selection(_checkpoint_picker(ckpt_slot, run), sample, image)
    image_slot.image(cache.input_thumbnail(run, selection.inputs), width=96)
    if image is not None:
        guess = cache.input_prediction(run, selection.inputs)
        image_slot.caption(f"**Your image** is in use on every page · predicted {guess}")
    st.query_params.update(selection.query)
    for key in ("image", "ckpt"):
        if key in st.query_params and key not in selection.query:
            del st.query_params[key]
    st.session_state["_ckpt_written"] = selection.checkpoint
    st.session_state["_run_written"] = run
    page_links(selection)
    return selection


def require_selection() -> Selection:
    """Draws the sidebar and returns its selection; stops the page when there is no run.

    Every page calls this first, so the sidebar is drawn by whichever script runs. A page that
    was started without ``app.py`` (see :mod:`ui.navigation`) is run through it instead.
    """
    if not navigation.inside_app():
        navigation.main()
        st.stop()
    selection = sidebar()
    if selection is None:
        st.info("There is no run to show yet. Train one on the Home page.")
        st.stop()
    return selection


def choose_run(name: str, sample: int | None = None) -> None:
    """Selects run ``name`` (and a sample; default: its first correctly classified one) for this
    session (for buttons' ``on_click``)."""
    _set_run(name, sample)


def select_run(name: str, sample: int | None = None) -> None:
    """Selects run ``name`` (and a sample) for this session and reruns the app."""
    choose_run(name, sample)
    st.rerun()


def open_sample(sample: int) -> None:
    """Selects validation sample ``sample`` (for buttons' ``on_click``: no rerun needed)."""
    st.session_state["_sample"] = int(sample)


def check_url(key: str, options: Collection[Any], message: str, legacy: str | None = None) -> None:
    """Checks the URL's value for widget ``key`` before the widget is drawn.

    A value not among ``options`` gets a toast, ``message.format(value)``, and the widget falls
    back to its default. ``legacy`` names the parameter of an older link form (``?channel=5``
    for ``fm_channel``): a valid value is taken into the widget, and the old name is dropped.
    """
    raw = st.query_params.get(legacy) if legacy else None
    if raw is not None:
        del st.query_params[legacy]
    else:
        raw = st.query_params.get(key)
    if raw is None or key in st.session_state:
        return
    match = next((o for o in options if str(o) == raw), None)
    if match is None:
        st.toast(message.format(raw), icon="⚠️")
    elif legacy:
        st.session_state[key] = match


def count_slider(
    where: Any, label: str, choices: tuple[int, ...], total: int, default: int, key: str, **kw: Any
) -> int:
    """A sample-count picker over ``choices`` capped at ``total`` (the last choice is ``total``
    itself when fewer are available); a caption instead of a slider when only one count fits.

    Args:
        where: the container to draw in (``st`` or a column).
        default: the preferred count, lowered to what exists.
    """
    sizes = [c for c in choices if c < total] + [total]
    if len(sizes) == 1:
        where.caption(f"{label}: all {total:,} (the dataset has no more).")
        return total
    value = max(s for s in sizes if s <= max(default, sizes[0]))
    return int(where.select_slider(label, sizes, value=value, **scoped(key, value), **kw))
