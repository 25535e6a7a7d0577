"""Home: the selected run at a glance; train a new run; bring your own weights and images."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import models, runs, uploads
from core.evaluation import confusion_matrix
from core.train import TrainConfig, TrainingJob
from ui import cache, state
from ui.figures import PLOTLY_CONFIG
from ui.home import confusion_figure, sample_grid, training_curves

ARCH_HELP = {
    "cnn": "TinyVGG-style conv net: three blocks of conv–BN–ReLU ×2 and max-pool",
    "resnet": "small ResNet: three stages of residual blocks with named skip connections",
    "mlp": "fully connected: flatten, two hidden layers",
    "vit": "small vision transformer: 4 blocks × 4 heads over image patches",
}
TRAIN_DATASETS = ("shapes", "digits", "fashion-mnist")


def overview(selection: state.Selection) -> None:
    run = cache.loaded_run(selection.run)
    info = run.info
    st.title(info.name)
    st.caption(
        f"{ARCH_HELP.get(info.arch, info.arch)} · trained on **{info.dataset.name}** "
        f"({len(run.dataset):,} images, {info.dataset.source}) · status {info.status}"
    )
    test = cache.predictions(selection.run, "test")
    cols = st.columns(4)
    cols[0].metric("Test accuracy", f"{test.accuracy:.1%}")
    cols[1].metric("Classes", len(info.dataset.class_names))
    cols[2].metric("Parameters", f"{sum(layer.params for layer in cache.layers(selection.run)):,}")
    cols[3].metric("Epochs", len(info.history) or "imported")

    left, right = st.columns([3, 2])
    with left:
        st.subheader("Training")
        if info.history:
            st.plotly_chart(training_curves(info.history), config=PLOTLY_CONFIG)
        else:
            st.info("Imported weights: no training history.")
        st.subheader("Validation samples")
        val = cache.predictions(selection.run, "val")
        shown = slice(selection.sample, selection.sample + 16)
        idx = run.splits.val[shown]
        st.plotly_chart(
            sample_grid(
                run.dataset.images[idx],
                val.labels[shown],
                val.predicted[shown],
                info.dataset.class_names,
            ),
            config=PLOTLY_CONFIG,
        )
        st.caption(
            f"Validation samples {selection.sample}–{selection.sample + len(idx) - 1}; "
            "red titles are mistakes (true → predicted)."
        )
    with right:
        st.subheader("Confusion matrix (test split)")
        matrix = confusion_matrix(test.labels, test.predicted, len(info.dataset.class_names))
        st.plotly_chart(confusion_figure(matrix, info.dataset.class_names), config=PLOTLY_CONFIG)
    st.subheader("Model summary")
    summary = pd.DataFrame(
        [
            {
                "layer": layer.name,
                "type": layer.type,
                "output shape": " × ".join(map(str, layer.output_shape)),
                "parameters": layer.params,
            }
            for layer in cache.layers(selection.run)
        ]
    )
    st.dataframe(summary, hide_index=True, height=300)
    st.caption(
        f"Weights SHA-256 `{info.weights_sha256[:16]}…` · created {info.created}"
        f" · folder `{info.path}`"
    )
    if not info.shipped and st.button("Delete this run", key="home_delete", type="secondary"):
        runs.delete_run(info.name)
        state.select_run(runs.DEFAULT_RUN)


@st.fragment(run_every=1.0)
def training_status() -> None:
    job: TrainingJob | None = st.session_state.get("training_job")
    if job is None:
        return
    progress = job.latest
    if job.running:
        label = "Starting…"
        if progress is not None:
            label = (
                f"Epoch {progress.epoch}/{progress.epochs}, step {progress.step}/"
                f"{progress.steps_per_epoch}: loss {progress.loss:.3f}"
            )
        st.progress(progress.fraction if progress else 0.0, text=label)
        if progress is not None and progress.history:
            st.plotly_chart(training_curves(progress.history), config=PLOTLY_CONFIG)
        if st.button("Stop (keep the last complete epoch)", key="train_stop"):
            job.stop()
        return
    del st.session_state["training_job"]
    if job.error is not None:
        st.error(f"Training failed: {job.error}")
    elif job.result is None:
        st.warning("Stopped before the first epoch completed: nothing was kept.")
    else:
        st.session_state["home_notice"] = f"Trained **{job.result.name}**."
        state.select_run(job.result.name)


def train_form() -> None:
    st.markdown(
        "Train a model here, on this machine. `cnn` on `shapes` takes about 20 s on a laptop CPU."
    )
    with st.form("train_form"):
        c1, c2, c3 = st.columns(3)
        dataset = c1.selectbox("Dataset", TRAIN_DATASETS, key="train_dataset")
        arch = c2.selectbox(
            "Architecture",
            list(models.BUILTIN_ARCHITECTURES),
            key="train_arch",
            format_func=lambda a: f"{a} — {ARCH_HELP[a]}",
        )
        epochs = c3.number_input("Epochs", 1, 50, 4, key="train_epochs")
        c4, c5, c6, c7 = st.columns(4)
        n_samples = c4.number_input(
            "Samples (0 = all / default)", 0, 70_000, 0, step=1000, key="train_samples"
        )
        batch = c5.selectbox("Batch size", (32, 64, 128, 256), index=1, key="train_batch")
        lr = c6.select_slider("Learning rate", (3e-4, 1e-3, 2e-3, 3e-3, 1e-2), 3e-3, key="train_lr")
        seed = c7.number_input("Seed", 0, 2**31 - 1, 0, key="train_seed")
        name = st.text_input("Run name (optional)", key="train_name")
        start = st.form_submit_button(
            "Train", type="primary", disabled="training_job" in st.session_state
        )
    if start:
        config = TrainConfig(
            model=arch,
            dataset=dataset,
            n_samples=n_samples or None,
            epochs=int(epochs),
            batch_size=int(batch),
            lr=float(lr),
            seed=int(seed),
        )
        st.session_state["training_job"] = TrainingJob(config, name=name or None)
    if "training_job" in st.session_state:  # poll only while a job exists
        training_status()


def bring_your_own() -> None:
    st.markdown(
        "Load weights you trained elsewhere (a `state_dict` as `.safetensors`, `.pt` or `.pth`; "
        "files that would run code are refused) for one of our architectures or any torchvision "
        "classifier, and score them on a dataset — ours, or a zip of your own image folder "
        "(one subfolder per class)."
    )
    with st.form("import_form"):
        c1, c2 = st.columns(2)
        arch = c1.selectbox(
            "Architecture",
            [*models.BUILTIN_ARCHITECTURES, *models.torchvision_architectures()],
            index=len(models.BUILTIN_ARCHITECTURES)
            + models.torchvision_architectures().index("tv:resnet18"),
            key="import_arch",
        )
        weights = c1.file_uploader(
            "Weights file", type=["safetensors", "pt", "pth"], key="import_weights"
        )
        dataset = c2.selectbox(
            "Dataset", [*TRAIN_DATASETS, "my image folder (zip)"], key="import_dataset"
        )
        image_size = c2.number_input("Input size (0 = the dataset's)", 0, 512, 0, key="import_size")
        archive = c2.file_uploader("Image folder (zip)", type=["zip"], key="import_zip")
        name = st.text_input("Run name (optional)", key="import_name")
        submitted = st.form_submit_button("Import", type="primary")
    if not submitted:
        return
    if weights is None:
        st.error("Choose a weights file first.")
        return
    try:
        with st.spinner("Checking and scoring the weights…"):
            folder, report = None, ""
            if dataset.startswith("my image folder"):
                if archive is None:
                    st.error("Choose a zip of your image folder, or pick one of our datasets.")
                    return
                loaded = uploads.unpack_image_zip(archive.name, archive.getvalue())
                report = f" Image folder: {loaded.report.summary()}."
                folder = loaded.dataset.info.source
            path = uploads.store_upload(weights.name, weights.getvalue(), uploads.WEIGHT_SUFFIXES)
            try:
                run_path = runs.import_run(
                    arch,
                    path,
                    "folder" if folder else dataset,
                    image_size=image_size or None,
                    dataset_path=folder,
                    name=name or None,
                )
            finally:
                path.unlink(missing_ok=True)
    except (ValueError, OSError, RuntimeError) as err:
        st.error(f"Nothing was imported. {err}")
        return
    st.session_state["home_notice"] = f"Imported **{run_path.name}**.{report}"
    state.select_run(run_path.name)


selection = state.require_selection()
if notice := st.session_state.pop("home_notice", None):
    st.success(notice)
tab_overview, tab_train, tab_import = st.tabs(["Overview", "Train a model", "Bring your own"])
with tab_overview:
    overview(selection)
with tab_train:
    train_form()
with tab_import:
    bring_your_own()
