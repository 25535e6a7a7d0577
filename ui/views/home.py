"""The home page's three views: the selected run at a glance, training a run, importing weights.

Why it exists: the page is layout only; each view here reads its widgets, asks ``ui.cache`` (or
``core``) for the numbers and draws the figures of ``ui.figures.home``. Every verdict (at
chance, which images were scored, which normalisation a choice means) comes from ``core``.

What can go wrong: training runs outside this process, in the queue of :mod:`core.jobs`; the
session keeps only the job's id (``training_job``, and ``?job=`` in the URL, so a reload finds
it), and the job's file says how it goes. The queue may refuse a job (a limit, one job per
session): the Train tab says why. An import that fails keeps nothing and says why.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator
from streamlit.runtime.uploaded_file_manager import UploadedFile

from core.data import uploads
from core.data.folder import CLASS_ORDER_RULE
from core.jobs import daemon as job_worker
from core.jobs import queue as job_queue
from core.models import runs, train, zoo
from core.models.evaluation import CHANCE_WARNING, Predictions, accuracy_text
from core.models.runs import EVALUATIONS, NO_NORMALIZATION_TEXT, NORMALIZATION_CHOICES, RunInfo
from core.models.train import TrainConfig
from ui import cache, state
from ui.figures import memo
from ui.figures.common import PLOTLY_CONFIG
from ui.figures.home import (
    GRID_SAMPLES,
    confusion_figure,
    live_curves,
    sample_grid,
    tour,
    training_curves,
)

TABS = ("Overview", "Train a model", "Bring your own")
TRAIN_TAB = TABS[1]
FOLDER_CHOICE = "my image folder (zip)"
INTRO = (
    "**layerscope** opens up a trained neural network: what each layer computes, what it has "
    "learned to tell apart, and which pixels a prediction rests on. This page shows the run "
    "picked in the sidebar (the sidebar also picks the image every page looks at). "
    "**Start here**, in this order:"
)


# --- overview ----------------------------------------------------------------------------------


def introduction(run: str) -> None:
    """What the app is, and the path through the pages, each link opening ``run``."""
    with st.container(border=True):
        st.markdown(INTRO)
        stops = tour(run, cache.attention_runs())
        for column, stop in zip(st.columns(len(stops)), stops, strict=True):
            column.page_link(
                stop.page, label=stop.label, icon=stop.icon, query_params={"run": stop.run}
            )
            column.caption(stop.text)


def evaluated_predictions(info: RunInfo) -> Predictions:
    """Predictions on the images the run's accuracy is measured on (its test split, or all)."""
    parts = [cache.predictions(info.name, split) for split in info.evaluated_splits]
    return parts[0] if len(parts) == 1 else runs.combine_predictions(parts)


def headline(info: RunInfo, test: Predictions, n_images: int) -> None:
    """The accuracy with its interval and what it was measured on; the numbers of the run."""
    cols = st.columns(4)
    cols[0].metric("Test accuracy", f"{test.accuracy:.1%}")
    cols[1].metric("Classes", len(info.dataset.class_names))
    cols[2].metric("Parameters", f"{sum(layer.params for layer in cache.layers(info.name)):,}")
    cols[3].metric("Epochs", len(info.history) or "imported")
    st.caption(f"Accuracy {accuracy_text(test)}. {runs.evaluation_text(info, test.n, n_images)}")
    shortcut = cache.shortcut_accuracy(info.name)
    if shortcut is not None:
        st.caption(shortcut.text())
    if test.at_chance:
        st.warning(CHANCE_WARNING, icon=":material/warning:")


def class_table(classes: tuple[str, ...]) -> None:
    """Output index → class name, as a small table."""
    frame = pd.DataFrame({"output": range(len(classes)), "class": classes})
    st.dataframe(frame, hide_index=True, width=360, height=min(300, 38 + 35 * len(classes)))


def imported_details(info: RunInfo) -> None:
    """What an auditor needs to read an imported run: weights, class order, input, scoring."""
    with st.expander("How this run was imported", expanded=True):
        cfg = info.config
        norm = info.normalization
        st.markdown(
            f"- **Weights file:** `{cfg.get('weights_file', '?')}`\n"
            f"- **Input normalisation:** {norm.describe() if norm else NO_NORMALIZATION_TEXT}\n"
            f"- **Scored on:** {EVALUATIONS[info.evaluated_on]}\n"
            "- **Class order** (output index → class):"
        )
        class_table(info.dataset.class_names)
        if cfg.get("dataset") == "folder":
            st.caption(CLASS_ORDER_RULE)


def delete_control(info: RunInfo) -> None:
    """Delete the run, after a confirmation."""
    with st.popover("Delete this run…", icon=":material/delete:"):
        st.markdown(
            f"This deletes **{info.name}** for good: its weights, metrics and "
            f"{len(info.checkpoints)} checkpoint(s)."
        )
        sure = st.checkbox(f"Yes, delete {info.name}", key=f"home_delete_confirm_{info.name}")
        if st.button("Delete", key="home_delete", type="primary", disabled=not sure):
            runs.delete_run(info.name)
            st.session_state["home_notice"] = f"Deleted **{info.name}**."
            state.select_run(runs.DEFAULT_RUN)


def validation_samples(selection: state.Selection) -> None:
    """A grid of validation samples from the selected one on, mistakes in red."""
    run = cache.loaded_run(selection.run)
    val = cache.predictions(selection.run, "val")
    shown = slice(selection.sample, selection.sample + GRID_SAMPLES)
    idx = run.splits.val[shown]
    names = run.info.dataset.class_names
    figure = memo.figure(
        sample_grid, run.dataset.images[idx], val.labels[shown], val.predicted[shown], names
    )
    st.plotly_chart(figure, config=PLOTLY_CONFIG)
    st.caption(
        f"Validation samples {selection.sample}–{selection.sample + len(idx) - 1}; "
        "red titles are mistakes (true → predicted); hover a title for full class names."
    )


def model_summary(info: RunInfo) -> None:
    """Every layer with its type, output shape and parameters; the weights' hash and folder."""
    rows = [
        {
            "layer": layer.name,
            "type": layer.type,
            "output shape": " × ".join(map(str, layer.output_shape)),
            "parameters": layer.params,
        }
        for layer in cache.layers(info.name)
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, height=300)
    st.caption(
        f"Weights SHA-256 `{info.weights_sha256[:16]}…` · created {info.created}"
        f" · folder `{info.path}`"
    )


def overview(selection: state.Selection) -> None:
    """The run at a glance: accuracy, curves, samples, confusion matrix, model summary."""
    run = cache.loaded_run(selection.run)
    info = run.info
    st.title(info.name)
    st.caption(
        f"{zoo.describe(info.arch)} · trained on **{info.dataset.name}** "
        f"({len(run.dataset):,} images, {info.dataset.source}) · status {info.status}"
    )
    introduction(info.name)
    test = evaluated_predictions(info)
    headline(info, test, len(run.dataset))
    if info.status == "imported":
        imported_details(info)
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Training")
        if info.history:
            st.plotly_chart(memo.figure(training_curves, info.history), config=PLOTLY_CONFIG)
        else:
            st.info("Imported weights: no training history.")
        st.subheader("Validation samples")
        validation_samples(selection)
    with right:
        scope = "all images" if info.evaluated_on == "all" else "test split"
        st.subheader(f"Confusion matrix ({scope})")
        figure = memo.figure(confusion_figure, test.confusion, info.dataset.class_names)
        st.plotly_chart(figure, config=PLOTLY_CONFIG)
    st.subheader("Model summary")
    model_summary(info)
    if not info.shipped:
        delete_control(info)


# --- train a model -----------------------------------------------------------------------------


def student() -> str:
    """This session's student token: one job at a time each (a reload adopts its job's)."""
    return st.session_state.setdefault("student", secrets.token_hex(8))


def my_job() -> job_queue.Job | None:
    """This session's training job: the one it submitted, or the one its URL names (a reload).

    The job's file is the truth (any server process may serve this session); ``?job=<id>`` in
    the URL lets a reloaded page find it again.
    """
    ss = st.session_state
    url_job = st.query_params.get("job")
    if url_job and "training_job" not in ss and (job := job_queue.get(url_job)) is not None:
        ss["training_job"], ss["student"] = job.id, job.owner
    job_id = ss.get("training_job")
    return job_queue.get(job_id) if job_id else None


def training_status() -> None:
    """The student's job: their place in line (refreshed every few seconds), or its progress
    (every second); Cancel; the outcome when it ends."""
    job = my_job()
    if job is not None:
        (waiting_status if job.state == "queued" else running_status)()


@st.fragment(run_every=3.0)
def waiting_status() -> None:
    """Place in line and the estimated start of a queued job, with Cancel."""
    job = my_job()
    if job is None or job.state != "queued":
        if job is not None and not job.active:
            finish_training(job)
        st.rerun()  # it started (or ended): the whole tab changes
        return
    job_worker.ensure_worker()  # a dead worker is replaced, and its jobs settled
    current = job_queue.jobs()
    wait = job_queue.start_estimate(job, current, job_queue.Limits.load().workers)
    waiting = sum(j.state == "queued" for j in current)
    st.info(
        f"Waiting in line: place **{job_queue.place(job, current)}** of {waiting}; "
        f"training should start in {train.duration(wait)}.",
        icon=":material/hourglass_top:",
    )
    cancel_button(job, "Cancel")


@st.fragment(run_every=1.0)
def running_status() -> None:
    """Progress, the live curves and Stop while the job trains; its outcome when it ends."""
    job = my_job()
    if job is None or not job.active:
        if job is not None:
            finish_training(job)
        return
    job_worker.ensure_worker()
    progress = job.latest
    label = progress.describe() if progress else "Loading the data and building the model…"
    st.progress(progress.fraction if progress else 0.0, text=label)
    if progress is not None:
        figure = live_curves(
            progress.step_losses, progress.steps_per_epoch, progress.history, progress.epochs
        )
        st.plotly_chart(figure, config=PLOTLY_CONFIG, key="train_live_curves")
    cancel_button(job, "Stop (keep the last complete epoch)")


def cancel_button(job: job_queue.Job, label: str) -> None:
    """Cancel/Stop, or that it was asked for."""
    if job_queue.cancel_requested(job.id):
        st.caption("Cancelling: the last complete epoch is kept…")
    else:
        st.button(label, key="train_stop", on_click=job_queue.cancel, args=(job.id,))


def finish_training(job: job_queue.Job) -> None:
    """Keeps the ended job's message for the Train tab and reruns the app (selecting its run)."""
    del st.session_state["training_job"]
    job_queue.acknowledge(job.id)
    st.query_params.pop("job", None)
    st.session_state["train_outcome"] = job.message
    st.session_state["home_show_training"] = True
    outcome = job.outcome
    if outcome is not None and outcome.run is not None and outcome.run.exists():
        state.select_run(outcome.run.name)
    st.rerun()


def start_training() -> None:
    """The Train button's callback: queues the job (or says why not) before the page redraws."""
    ss = st.session_state
    if (job := my_job()) is not None and job.active:
        return
    config = TrainConfig(
        model=ss["train_arch"],
        dataset=ss["train_dataset"],
        n_samples=int(ss["train_samples"]) or None,
        epochs=int(ss["train_epochs"]),
        batch_size=int(ss["train_batch"]),
        lr=float(ss["train_lr"]),
        seed=int(ss["train_seed"]),
        label_noise=float(ss.get("train_noise", 0)) / 100,
        train_subset=int(ss.get("train_subset", 0)) or None,
        init_from=ss.get("train_from") or None,
        freeze_blocks=int(ss.get("train_freeze", 0)),
    )
    ss.pop("train_outcome", None)
    ss["home_tab"] = TRAIN_TAB  # the progress is on this tab: stay on it
    try:
        job = job_queue.submit(config, student(), name=ss["train_name"] or None)
    except ValueError as err:  # JobRefused, or a teacher's limit file that cannot be read
        ss["train_outcome"] = ("error", str(err))
        return
    job_worker.ensure_worker()
    ss["training_job"] = job.id
    st.query_params["job"] = job.id
    if job.renamed_from:
        ss["train_outcome"] = (
            "info",
            f"A run or queued job is already called **{job.renamed_from}**: "
            f"yours will be **{job.name}**.",
        )


def train_form() -> None:
    """The training form; Train is off (and says why) while a job runs."""
    st.markdown(
        "Train a model here, on this machine. `cnn` on `shapes` takes about "
        f"{train.QUICK_RUN_SECONDS} s on a laptop CPU."
    )
    job = my_job()
    busy = job is not None and job.active
    default = TrainConfig()
    with st.form("train_form"):
        c1, c2, c3 = st.columns(3)
        c1.selectbox("Dataset", train.TRAIN_DATASETS, key="train_dataset")
        c2.selectbox(
            "Architecture",
            list(zoo.BUILTIN_ARCHITECTURES),
            key="train_arch",
            format_func=lambda a: f"{a} — {zoo.describe(a)}",
        )
        c3.number_input("Epochs", 1, train.MAX_EPOCHS, default.epochs, key="train_epochs")
        c4, c5, c6, c7 = st.columns(4)
        c4.number_input(
            "Samples (0 = all / default)", 0, train.MAX_SAMPLES, 0, step=1000, key="train_samples"
        )
        c5.selectbox(
            "Batch size",
            train.BATCH_SIZES,
            index=train.BATCH_SIZES.index(default.batch_size),
            key="train_batch",
        )
        c6.select_slider("Learning rate", train.LEARNING_RATES, default.lr, key="train_lr")
        c7.number_input("Seed", 0, 2**31 - 1, default.seed, key="train_seed")
        c8, c9 = st.columns(2)
        c8.slider(
            "Label noise (% of training labels made random)", 0, train.MAX_LABEL_NOISE, 0,
            key="train_noise", help="For the Training page's overfitting view: noisy samples "
            "are learned last, if at all. The run records which samples were relabelled.",
        )  # fmt: skip
        c9.number_input(
            "Training subset (0 = the whole training split)", 0, train.MAX_SAMPLES, 0, step=100,
            key="train_subset", help="Train on only this many samples: a small set overfits.",
        )  # fmt: skip
        c10, c11 = st.columns(2)
        c10.selectbox(
            "Start from run (fine-tune; same architecture)",
            ["", *(r.name for r in cache.run_list())], key="train_from",
            format_func=lambda r: r or "random initial weights",
            help="Copies every layer whose shape fits; the head is new. Images are adapted to "
            "that run's input size and colour. The Training page's Transfer view compares them.",
        )  # fmt: skip
        c11.number_input("Freeze the first k blocks", 0, 10, 0, key="train_freeze")
        st.text_input("Run name (optional)", key="train_name")
        button, note = st.columns([1, 6], vertical_alignment="center")
        button.form_submit_button("Train", type="primary", disabled=busy, on_click=start_training)
        if busy:
            doing = "is running" if job.state == "running" else "is waiting in line"
            note.caption(
                f"Your job **{job.name}** {doing}: Train is off until it ends or you cancel it."
            )
    if job is not None:
        training_status()
    if outcome := st.session_state.get("train_outcome"):
        level, text = outcome
        getattr(st, level)(text)


# --- bring your own ----------------------------------------------------------------------------


def normalization_choice(column: DeltaGenerator) -> tuple[runs.Normalization | None, str | None]:
    """The input normalisation the weights expect, as chosen, or why the typed one is wrong."""
    choice = column.selectbox(
        "Input normalisation",
        list(NORMALIZATION_CHOICES),
        format_func=NORMALIZATION_CHOICES.get,
        key="import_norm",
        help="What the weights expect of their input; applied inside the model on every page.",
    )
    mean_col, std_col = column.columns(2)
    hint = "Used with “my own mean and std”: one value per channel, or one for all."
    mean = mean_col.text_input("Own mean", "0.5, 0.5, 0.5", key="import_mean", help=hint)
    std = std_col.text_input("Own std", "0.5, 0.5, 0.5", key="import_std", help=hint)
    try:
        return runs.chosen_normalization(choice, mean, std), None
    except ValueError as err:
        return None, str(err)


def class_order_preview(archive: UploadedFile) -> None:
    """The zip's classes in output order, before importing (or why it cannot be used)."""
    try:
        classes = uploads.zip_class_names(archive.name, archive.getvalue())
    except ValueError as err:
        st.error(str(err))
        return
    st.markdown(f"**Class order in {archive.name}.** {CLASS_ORDER_RULE}")
    class_table(classes)


@dataclass(frozen=True)
class ImportRequest:
    """What the bring-your-own form holds, and which of its buttons was pressed."""

    arch: str
    weights: UploadedFile | None
    dataset: str
    archive: UploadedFile | None
    image_size: int
    normalization: runs.Normalization | None
    normalization_error: str | None
    evaluate: str
    name: str
    submitted: bool


def import_form() -> ImportRequest:
    """The bring-your-own form; Import waits for uploads to finish, as every form submit does."""
    tv = zoo.torchvision_architectures()
    with st.form("import_form"):
        c1, c2 = st.columns(2)
        arch = c1.selectbox(
            "Architecture",
            [*zoo.BUILTIN_ARCHITECTURES, *tv],
            index=len(zoo.BUILTIN_ARCHITECTURES) + tv.index(uploads.DEFAULT_IMPORT_ARCH),
            key="import_arch",
        )
        suffixes = [suffix.lstrip(".") for suffix in uploads.WEIGHT_SUFFIXES]
        weights = c1.file_uploader("Weights file", type=suffixes, key="import_weights")
        normalization, normalization_error = normalization_choice(c1)
        datasets = [*train.TRAIN_DATASETS, FOLDER_CHOICE]
        dataset = c2.selectbox("Dataset", datasets, key="import_dataset")
        image_size = c2.number_input(
            "Input size (0 = the dataset's)", 0, uploads.MAX_IMAGE_SIZE, 0, key="import_size"
        )
        archive = c2.file_uploader("Image folder (zip)", type=["zip"], key="import_zip")
        evaluate = c2.radio(
            "Score on", list(EVALUATIONS), format_func=EVALUATIONS.get, key="import_evaluate"
        )
        name = st.text_input("Run name (optional)", key="import_name")
        b1, b2, _ = st.columns([1, 1, 5])
        submitted = b1.form_submit_button("Import", type="primary", key="import_submit")
        b2.form_submit_button("Check the zip", key="import_check")
    return ImportRequest(
        arch, weights, dataset, archive, int(image_size),
        normalization, normalization_error, evaluate, name, submitted,
    )  # fmt: skip


def import_problem(request: ImportRequest) -> str | None:
    """Why the form cannot be imported as it stands (``None``: it can)."""
    if request.weights is None:
        return "Choose a weights file first."
    if request.dataset == FOLDER_CHOICE and request.archive is None:
        return "Choose a zip of your image folder, or pick one of our datasets."
    if request.dataset != FOLDER_CHOICE and request.archive is not None:
        return (
            f"A zip is chosen but the dataset is {request.dataset}: pick “{FOLDER_CHOICE}” "
            "to score on your images, or remove the zip."
        )
    if request.normalization_error:
        return f"Nothing was imported. {request.normalization_error}"
    return None


def submit_import(request: ImportRequest) -> None:
    """Imports, or says why nothing was imported (and nothing was kept)."""
    if problem := import_problem(request):
        st.error(problem)
        return
    archive, weights = request.archive, request.weights
    assert weights is not None  # import_problem says so otherwise
    try:
        with st.spinner("Checking and scoring the weights…"):
            imported = uploads.import_upload(
                request.arch,
                weights.name,
                weights.getvalue(),
                request.dataset,
                archive_name=archive.name if archive else None,
                archive=archive.getvalue() if archive else None,
                image_size=request.image_size or None,
                normalization=request.normalization,
                evaluate=request.evaluate,
                name=request.name or None,
            )
    except (ValueError, OSError, RuntimeError) as err:
        st.error(f"Nothing was imported. {err}")
        return
    st.session_state["home_notice"] = imported.summary()
    state.select_run(imported.run.name)


def bring_your_own() -> None:
    """Upload weights (and a zip of images), check the class order, import and score them."""
    st.markdown(
        "Load weights you trained elsewhere (a `state_dict` as `.safetensors`, `.pt` or `.pth`; "
        "files that would run code are refused) for one of our architectures or any torchvision "
        "classifier, and score them on a dataset — ours, or a zip of your own image folder "
        "(one subfolder per class). **Check the zip** shows its class order before you import."
    )
    request = import_form()
    if request.normalization_error:
        st.error(request.normalization_error)
    if request.archive is not None:
        class_order_preview(request.archive)
    if request.submitted:
        submit_import(request)
