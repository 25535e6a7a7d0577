"""The Training page's views: the run over time, the layer x checkpoint grids, the samples'
learning and forgetting, and overfitting (training vs held-out).

The page's checkpoint scrubber is the sidebar's checkpoint (one value, ``?ckpt=``, shared with
every page): moving it re-reads the grids (computed once, with a progress bar and Stop, then
kept) and only redraws. The aligned projection animates in the browser (play and slider).
What can go wrong: a run without checkpoints (an imported one) has nothing to scrub.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from core.feature_maps.weights import WeightImages
from core.models.runs import Checkpoint, LoadedRun
from core.training import events as ev
from core.training.projection import AlignedOptions
from core.training.similarity import settling_text
from ui import cache, state
from ui.figures import memo
from ui.figures import training as figs
from ui.figures.common import PLOTLY_CONFIG
from ui.figures.feature_maps import weights_figure, weights_key
from ui.figures.home import sample_grid

GALLERY_N = 16


@dataclass(frozen=True)
class Moment:
    """The run and the checkpoint the page looks at.

    Attributes:
        name: the run's name (final weights; every grid spans all checkpoints).
        run: the loaded run.
        checkpoints: its checkpoints in training order.
        index: the chosen checkpoint's position in ``checkpoints``.
    """

    name: str
    run: LoadedRun
    checkpoints: list[Checkpoint]
    index: int

    @property
    def labels(self) -> list[str]:
        """Every checkpoint's label (``init``, ``epoch 1/8``, ...)."""
        return [c.label for c in self.checkpoints]

    @property
    def epochs(self) -> np.ndarray:
        """``[T]`` fractional epochs."""
        return np.array([c.epoch for c in self.checkpoints])

    @property
    def label(self) -> str:
        """The chosen checkpoint's label."""
        return self.checkpoints[self.index].label


def _on_scrub(name: str) -> None:
    state.set_checkpoint(name, st.session_state["train_ckpt"])


def scrubber(selection: state.Selection) -> Moment | None:
    """The checkpoint slider (the sidebar's checkpoint); ``None`` when the run has none."""
    name = selection.base
    run = cache.loaded_run(name)
    checkpoints = cache.checkpoints(name)
    if len(checkpoints) < 2:
        st.info(
            f"**{name}** has no checkpoints to scrub (an imported run, or one trained before "
            "checkpoints were kept). Train a run on the Home page to see it form."
        )
        return None
    values = [c.value for c in checkpoints] + [state.FINAL]  # as the sidebar's
    current = selection.checkpoint or state.FINAL
    index = values.index(current) if current in values else len(values) - 1
    st.session_state["train_ckpt"] = values[index]
    st.select_slider(
        "Checkpoint",
        values,
        key="train_ckpt",
        format_func=state.checkpoint_labels(name).__getitem__,
        on_change=_on_scrub,
        args=(name,),
        help="The same checkpoint as the sidebar's: every other page shows the model as it was "
        "here. The projection below also plays by itself.",
    )
    return Moment(name, run, checkpoints, min(index, len(checkpoints) - 1))  # final: the last


def time_view(moment: Moment) -> None:
    """Training curves with a marker, the aligned projection, the first layer's filters."""
    events = cache.training_grid(moment.name, "training.learning_events")
    st.plotly_chart(
        memo.figure(
            figs.curves_figure,
            moment.run.info.history,
            moment.epochs,
            events.accuracy,
            float(moment.epochs[moment.index]),
        ),
        config=PLOTLY_CONFIG,
        key="train_curves",
    )
    n = events.correct.shape[1]
    st.caption(
        f"Dotted: accuracy on {n:,} held-out samples at every checkpoint (init included); "
        f"at {moment.label}: {events.accuracy[moment.index]:.1%}."
    )
    cka = cache.training_grid(moment.name, "training.cka_to_final")
    layers = list(cka.layers)
    default = layers[-2] if len(layers) > 1 else layers[-1]
    left, right = st.columns([3, 2])
    layer = left.selectbox(
        "Layer to project", layers, index=layers.index(default),
        **state.scoped("train_layer", default),
    )  # fmt: skip
    options = AlignedOptions("" if layer == default else layer)  # "": the stored default
    proj = cache.training_grid(moment.name, "training.aligned_projection", "held_out", options)
    samples = cache.training_samples(moment.name, "held_out")
    left.plotly_chart(
        memo.figure(figs.aligned_animation, proj.frames, samples.batch.labels,
                    moment.run.info.dataset.class_names, moment.labels, moment.index),
        config=PLOTLY_CONFIG, key="train_projection",
    )  # fmt: skip
    left.caption(
        f"PCA of {proj.layer} (pooled) at every checkpoint, each frame rotated onto the next "
        f"(Procrustes) so points move rather than jump; {len(samples.indices):,} held-out "
        f"samples coloured by class. The two components hold "
        f"{proj.explained[moment.index]:.0%} of the variance at {moment.label}."
    )
    filters_view(moment, right)


def filters_view(moment: Moment, where: object) -> None:
    """The first convolution's filters at the chosen checkpoint."""
    layers = cache.layers(moment.name)
    if not any(layer.type == "Conv2d" for layer in layers):
        where.info("This model has no convolution, so no filters to watch.")
        return
    frames = cache.training_grid(moment.name, "training.filters")
    t = moment.index
    weights = WeightImages(frames.layer, frames.images[t] - 0.5, frames.images[t])
    where.markdown(f"**First-layer filters at {moment.label}** ({frames.layer})")
    where.plotly_chart(
        memo.figure(weights_figure, weights, cols=8), config=PLOTLY_CONFIG, key="train_filters"
    )
    growth = frames.norms[t].mean() / frames.norms[0].mean()
    where.caption(f"{weights_key(weights)} Mean filter norm: {growth:.2f}× the initial weights'.")


def grids_view(moment: Moment) -> None:
    """Layer x checkpoint heatmaps: CKA to the end, and probe accuracy of a chosen target."""
    cka = cache.training_grid(moment.name, "training.cka_to_final")
    st.subheader("How close each layer is to its final self")
    st.plotly_chart(
        memo.figure(
            figs.grid_heatmap,
            cka.cka,
            cka.layers,
            moment.labels,
            moment.index,
            colour_title="linear CKA",
        ),
        config=PLOTLY_CONFIG,
        key="train_cka",
    )
    st.caption(settling_text(cka, moment.labels))
    probes = cache.training_grid(moment.name, "training.probe_grid")
    target = st.selectbox(
        "Probe target", list(probes.targets), **state.scoped("train_target", probes.targets[0])
    )
    p = probes.targets.index(target)
    st.subheader(f"How linearly readable the {target} is, per layer and checkpoint")
    st.plotly_chart(
        memo.figure(
            figs.grid_heatmap,
            probes.accuracy[p],
            probes.layers,
            moment.labels,
            moment.index,
            colour_title="probe acc.",
            fmt=".0%",
        ),
        config=PLOTLY_CONFIG,
        key="train_probes",
    )
    st.caption(
        f"Ridge-classifier probe on pooled features, mean of 3 stratified splits of "
        f"{probes.n:,} held-out samples (a quarter tested each time); chance "
        f"{probes.chance[p]:.0%}; largest split-to-split std {probes.std[p].max():.1%}."
    )


def samples_view(moment: Moment) -> None:
    """Galleries of the earliest-learned, latest-learned and most-forgotten samples."""
    split = st.segmented_control(
        "Samples", ["held_out", "train"], default="held_out", key="train_split",
        format_func={"held_out": "held-out", "train": "training (labels trained on)"}.get,
        **state.VIEW,
    ) or "held_out"  # fmt: skip
    events = cache.training_grid(moment.name, "training.learning_events", split)
    samples = cache.training_samples(moment.name, split)
    never = int((events.final_learned < 0).sum())
    st.caption(
        f"{len(samples.indices):,} samples; {int((events.forgetting > 0).sum()):,} forgotten at "
        f"least once between checkpoints; {never:,} wrong at the end. Titles: label (→ the "
        f"prediction at {moment.label} when wrong)."
    )
    if samples.relabelled.any():
        noisy = ev.learned_when(events, moment.epochs, samples.relabelled)
        clean = ev.learned_when(events, moment.epochs, ~samples.relabelled)
        st.info(
            f"Label noise: {int(samples.relabelled.sum()):,} of these samples carry a random "
            f"label. Finally learned at epoch {noisy:.2f} on average, against {clean:.2f} for "
            "the clean ones (never learned counts as one epoch past the end)."
        )
    classes = moment.run.info.dataset.class_names
    for kind, text in ev.GALLERIES.items():
        picked = ev.gallery(events, kind, GALLERY_N)
        st.markdown(f"**{text.capitalize()}**")
        if not len(picked):
            st.caption("None.")
            continue
        when = [moment.labels[f] if f >= 0 else "never" for f in events.final_learned[picked]]
        st.plotly_chart(
            memo.figure(
                sample_grid,
                samples.batch.images[picked],
                samples.batch.labels[picked],
                events.predicted[moment.index, picked],
                classes,
            ),
            config=PLOTLY_CONFIG,
            key=f"train_gallery_{kind}",
        )
        st.caption(
            "Finally learned: "
            + ", ".join(when)
            + " · forgetting events: "
            + ", ".join(str(int(k)) for k in events.forgetting[picked])
        )


def overfitting_view(moment: Moment) -> None:
    """The train/validation gap over time, and per layer, probes on training vs held-out."""
    history = moment.run.info.history
    gap = [h["train_accuracy"] - h["val_accuracy"] for h in history]
    st.line_chart({"train − validation accuracy": gap}, x_label="epoch", height=220)
    st.caption(
        "Per epoch (training accuracy is measured during the epoch, on the labels trained on). "
        + ", ".join(f"epoch {h['epoch']}: {g:+.1%}" for h, g in zip(history, gap, strict=True))
    )
    train = cache.training_grid(moment.name, "training.probe_grid", "train")
    held = cache.training_grid(moment.name, "training.probe_grid", "held_out")
    t = moment.index
    st.plotly_chart(
        memo.figure(
            figs.probe_gap_figure,
            held.layers,
            train.accuracy[0, :, t],
            held.accuracy[0, :, t],
            moment.label,
        ),
        config=PLOTLY_CONFIG,
        key="train_gap",
    )
    st.caption(
        f"Probes fitted and tested within each set ({train.n:,} training, {held.n:,} held-out "
        "samples). On a label-noise run, a layer whose training-sample probe reads the random "
        "labels better than chance has memorised them."
    )


def transfer_view(moment: Moment) -> None:
    """A fine-tuned run against its source: per-layer CKA, probes, relative weight change."""
    source = moment.run.info.config.get("init_from")
    if not source:
        st.info(
            f"**{moment.name}** was trained from random weights. Train a run on the Home page "
            "starting from another run to see what fine-tuning changes, layer by layer."
        )
        return
    report = cache.training_transfer(moment.name)
    frozen = moment.run.info.config.get("freeze_blocks", 0)
    st.markdown(
        f"Started from **{source}**" + (f", first {frozen} block(s) frozen." if frozen else ".")
    )
    st.plotly_chart(
        memo.figure(
            figs.transfer_figure, report.layers, report.cka, report.probe_source, report.probe_tuned
        ),
        config=PLOTLY_CONFIG,
        key="train_transfer",
    )
    st.caption(
        f"On {report.n:,} held-out samples of the new dataset; probes: ridge classifier of the "
        "new labels, one stratified split (a quarter tested)."
    )
    weights = [i for i, p in enumerate(report.params) if p.endswith("weight")]
    st.plotly_chart(
        memo.figure(
            figs.change_figure, [report.params[i] for i in weights], report.relative_change[weights]
        ),
        config=PLOTLY_CONFIG,
        key="train_change",
    )


VIEWS = {
    "Over time": time_view,
    "Layers × checkpoints": grids_view,
    "Samples": samples_view,
    "Overfitting": overfitting_view,
    "Transfer": transfer_view,
}
