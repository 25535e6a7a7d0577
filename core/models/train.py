"""Training a model on a dataset, epoch by epoch, into a run folder.

The loop is plain PyTorch: AdamW with a one-cycle learning rate, batches drawn from a seeded
permutation, one checkpoint per epoch written atomically (see :mod:`core.models.runs`), plus the
initial weights and log-spaced checkpoints inside the first epoch (for the Training page).
Options for watching overfitting: a small training subset, and label noise (a seeded fraction
of the training labels replaced by other, random classes; the run records which). It reports
every step to a progress callback (with a running history of the step losses and an estimate
of the time left) and checks a stop callback between steps; a stopped or killed run keeps its
last complete epoch. With the same config on the CPU, the weights hash is the same every time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.data.datasets import Dataset, Shortcut, adapt_images, load_dataset, split_indices
from core.device import pick_device
from core.files import load_state_dict
from core.models.evaluation import predict
from core.models.runs import FIRST_EPOCH_FRACTIONS, RunWriter, find_run, read_run
from core.models.zoo import TORCHVISION_PREFIX, build_model

MAX_LOSS_POINTS = 400
"""At most this many points in :attr:`TrainProgress.step_losses` over a whole run."""
MIN_STEPS_FOR_ETA = 3
"""Steps to time before estimating the time left."""
TRAIN_DATASETS = ("shapes", "digits", "fashion-mnist")
"""Datasets the app offers to train on (small enough for a laptop CPU)."""
MAX_EPOCHS = 50
"""The most epochs the app lets one run train for."""
MAX_SAMPLES = 70_000
"""The most samples the app lets one run draw (all of Fashion-MNIST)."""
BATCH_SIZES = (32, 64, 128, 256)
"""Batch sizes the app offers; :class:`TrainConfig`'s default is one of them."""
LEARNING_RATES = (3e-4, 1e-3, 2e-3, 3e-3, 1e-2)
"""Peak learning rates the app offers; :class:`TrainConfig`'s default is one of them."""
MAX_LABEL_NOISE = 80
"""The most label noise, in percent, the app offers."""
QUICK_RUN_SECONDS = 20
"""About how long the default config (``cnn`` on ``shapes``) trains on a laptop CPU."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run.

    Attributes:
        model: architecture name (``cnn``, ``mlp``, ``resnet``, ``vit``, ``tv:<name>``).
        dataset: dataset name (see :data:`core.data.DATASETS`).
        n_samples: samples to generate or draw (``None``: the dataset's default / all).
        image_size: resize images to this side (``None``: the dataset's own).
        epochs: passes over the training split.
        batch_size: samples per step.
        lr: peak learning rate of the one-cycle schedule.
        weight_decay: AdamW weight decay.
        seed: seeds the data, the split, the initial weights and the batch order.
        device: ``auto`` (cuda, mps, cpu) or a device string.
        label_noise: fraction of the training labels replaced by another, random class.
        train_subset: train on only this many samples of the training split (``None``: all).
        init_from: start from this run's final weights (same architecture): every tensor whose
            name and shape fit is copied, the head is new; the images are adapted to the
            source's input shape. ``None``: random initial weights.
        freeze_blocks: with ``init_from``, the first this many top-level blocks are not trained
            (their BatchNorm statistics still adapt).
        augment: train on random flips and quarter turns of each image (:func:`augment_batch`;
            only for data whose labels do not change under them, like ``shapes``).
        shortcut: a spurious correlation in the training split, ``"<factor>=<strength>"``
            (``"colour=0.95"``; ``shapes`` only, see :class:`core.data.datasets.Shortcut`).
    """

    model: str = "cnn"
    dataset: str = "shapes"
    n_samples: int | None = None
    image_size: int | None = None
    epochs: int = 4
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"
    label_noise: float = 0.0
    train_subset: int | None = None
    init_from: str | None = None
    freeze_blocks: int = 0
    augment: bool = False
    shortcut: str | None = None


@dataclass(frozen=True)
class TrainingSet:
    """What a run trains on.

    Attributes:
        indices: ``[M]`` dataset indices of the training samples, in training-split order.
        labels: ``[M]`` the labels trained on (random ones for the relabelled samples).
        relabelled: ``[R]`` sorted dataset indices whose label was replaced.
        new_labels: ``[R]`` the random labels they got.
    """

    indices: np.ndarray
    labels: np.ndarray
    relabelled: np.ndarray
    new_labels: np.ndarray


def training_set(config: TrainConfig, train_split: np.ndarray, labels: np.ndarray) -> TrainingSet:
    """The training samples and their labels under ``config``'s subset and label noise.

    Args:
        config: its ``train_subset``, ``label_noise`` and ``seed`` are read.
        train_split: ``[M]`` the run's training split (dataset indices).
        labels: ``[N]`` the dataset's true labels.

    Raises:
        ValueError: a noise fraction outside [0, 1) or a subset smaller than 2 samples.
    """
    if not 0 <= config.label_noise < 1:
        raise ValueError(f"Label noise is a fraction in [0, 1), not {config.label_noise}.")
    idx = np.asarray(train_split)
    if config.train_subset is not None:
        if config.train_subset < 2:
            raise ValueError("A training subset needs at least 2 samples.")
        idx = idx[: config.train_subset]
    y = labels[idx].copy()
    rng = np.random.default_rng(config.seed + 7919)  # its own stream: weights stay as they were
    flipped = rng.permutation(len(idx))[: round(config.label_noise * len(idx))]
    n_classes = int(labels.max()) + 1
    y[flipped] = (y[flipped] + rng.integers(1, n_classes, len(flipped))) % n_classes
    order = np.argsort(idx[flipped])
    return TrainingSet(idx, y, idx[flipped][order], y[flipped][order])


def head_name(model: torch.nn.Module) -> str:
    """The classifier head: the last ``nn.Linear`` module's name."""
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)][-1]


def transfer_weights(
    model: torch.nn.Module, source: dict[str, torch.Tensor], freeze_blocks: int = 0
) -> list[str]:
    """Copies every tensor of ``source`` whose name and shape fit ``model``, except the head
    (:func:`head_name`), and freezes the parameters of the first ``freeze_blocks`` top-level
    children. Returns the copied names.
    """
    own, head = model.state_dict(), head_name(model) + "."
    copied = {
        k: v.to(own[k].dtype)
        for k, v in source.items()
        if k in own and own[k].shape == v.shape and not k.startswith(head)
    }
    model.load_state_dict(copied, strict=False)
    for _, block in list(model.named_children())[:freeze_blocks]:
        block.requires_grad_(False)
    return sorted(copied)


def first_epoch_steps(steps_per_epoch: int) -> dict[int, float]:
    """Step (1-based) after which each in-epoch checkpoint is kept -> its fractional epoch.

    Fractions that fall on the same step, or on the epoch's last step, are kept once (or not).
    """
    out: dict[int, float] = {}
    for fraction in FIRST_EPOCH_FRACTIONS:
        step = round(fraction * steps_per_epoch)
        if 1 <= step < steps_per_epoch and step not in out:
            out[step] = fraction
    return out


@dataclass(frozen=True)
class TrainProgress:
    """What the progress callback receives after each step.

    Attributes:
        epoch: 1-based epoch in progress.
        epochs: epochs in the run.
        step: 1-based step within the epoch.
        steps_per_epoch: steps in one epoch.
        loss: this step's training loss.
        history: per-epoch metrics completed so far.
        step_losses: ``(global step, mean training loss over the steps since the last point)``
            every :func:`loss_every` steps, from the first step on: a curve before any epoch ends.
        elapsed: seconds since the first step began (validation included).
    """

    epoch: int
    epochs: int
    step: int
    steps_per_epoch: int
    loss: float
    history: list[dict[str, float]] = field(default_factory=list)
    step_losses: tuple[tuple[int, float], ...] = ()
    elapsed: float = 0.0

    @property
    def total_steps(self) -> int:
        """Steps in the whole run."""
        return self.epochs * self.steps_per_epoch

    @property
    def global_step(self) -> int:
        """1-based step counted over the whole run."""
        return (self.epoch - 1) * self.steps_per_epoch + self.step

    @property
    def fraction(self) -> float:
        """Share of all steps done, for a progress bar."""
        return self.global_step / self.total_steps

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left, from the time per step so far (``None`` until a few steps are timed)."""
        if self.global_step < MIN_STEPS_FOR_ETA or self.elapsed <= 0:
            return None
        return self.elapsed / self.global_step * (self.total_steps - self.global_step)

    def describe(self) -> str:
        """One line for a progress bar: epoch, step, loss and the time left."""
        text = (
            f"Epoch {self.epoch}/{self.epochs}, step {self.step}/{self.steps_per_epoch}: "
            f"loss {self.loss:.3f}"
        )
        eta = self.eta_seconds
        return text + (" · estimating time left…" if eta is None else f" · {duration(eta)} left")


def duration(seconds: float) -> str:
    """``"about 40 s"``, ``"about 3 min"``, ``"about 1 h 5 min"``: a time left, for a person."""
    if seconds < 10:
        return f"about {max(1, round(seconds))} s"
    if seconds < 57.5:
        return f"about {5 * round(seconds / 5)} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60} min"


def loss_every(total_steps: int) -> int:
    """Steps per point of :attr:`TrainProgress.step_losses` (at most :data:`MAX_LOSS_POINTS`)."""
    return max(1, -(-total_steps // MAX_LOSS_POINTS))


class _LossTrace:
    """Collects step losses into points of their running mean, every ``every`` steps."""

    def __init__(self, every: int):
        self.every, self.pending = every, []
        self.points: tuple[tuple[int, float], ...] = ()

    def add(self, global_step: int, loss: float) -> tuple[tuple[int, float], ...]:
        """Adds one step's loss; returns the points so far (a new tuple when one was added)."""
        self.pending.append(loss)
        if len(self.pending) >= self.every or global_step == 1:
            self.points = (*self.points, (global_step, float(np.mean(self.pending))))
            self.pending = []
        return self.points


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of ``x`` ``[N, C, H, H]`` flipped left-right or not and turned 0-3 quarter
    turns, at random from ``generator``: the eight symmetries of the square, no pixel invented.
    """
    flip = torch.rand(len(x), generator=generator) < 0.5
    turns = torch.randint(4, (len(x),), generator=generator)
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    out = x.clone()
    for k in (1, 2, 3):
        out[turns == k] = torch.rot90(x[turns == k], k, dims=(-2, -1))
    return out


def model_input_shape(config: TrainConfig, data: Dataset) -> tuple[int, int, int]:
    """The ``(C, H, W)`` the model takes: the data's, with 3 channels for torchvision models."""
    c, h, w = data.info.input_shape
    if config.model.startswith(TORCHVISION_PREFIX):
        c = 3
    return (c, h, w)


def train(
    config: TrainConfig,
    *,
    name: str | None = None,
    runs_root: str | Path | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    data: Dataset | None = None,
) -> Path | None:
    """Trains ``config`` into a new run folder and returns its path.

    Args:
        config: what to train.
        name: the run's name (default: ``<model>-<dataset>-<time>``); made unique.
        runs_root: where runs live (default :func:`core.runs.runs_root`).
        progress: called after every step.
        should_stop: checked between steps; when it returns True, training ends and the run
            keeps its last complete epoch.
        data: the dataset, if already loaded (must match ``config``).

    Returns:
        The run folder, or ``None`` if stopped before the first epoch completed (nothing kept).
    """
    torch.manual_seed(config.seed)
    device = pick_device(None if config.device == "auto" else config.device)
    data = data or load_dataset(
        config.dataset,
        n=config.n_samples,
        seed=config.seed,
        image_size=config.image_size,
        shortcut=Shortcut.parse(config.shortcut),
    )
    source = read_run(find_run(config.init_from)) if config.init_from else None
    input_shape = tuple(source.input_shape) if source else model_input_shape(config, data)
    images = adapt_images(data.images, input_shape)
    splits = split_indices(len(data), config.seed)
    model = build_model(config.model, input_shape, len(data.info.class_names))
    if source is not None:
        if source.arch != config.model:
            raise ValueError(f"Run {source.name} is a {source.arch}, not a {config.model}.")
        state = load_state_dict(source.path / "model.safetensors")
        transfer_weights(model, state, config.freeze_blocks)
    model = model.to(device)

    chosen = training_set(config, splits.train, data.labels)
    steps_per_epoch = max(1, len(chosen.indices) // config.batch_size)
    in_epoch = first_epoch_steps(steps_per_epoch)
    optimiser = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.lr,
        weight_decay=config.weight_decay,
    )  # fmt: skip
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.25
    )
    train_x = torch.from_numpy(images[chosen.indices])
    train_y = torch.from_numpy(chosen.labels)
    order_rng = torch.Generator().manual_seed(config.seed)
    augment_rng = torch.Generator().manual_seed(config.seed + 1)
    writer = RunWriter.create(config, data.info, input_shape, name=name, root=runs_root)
    if len(chosen.relabelled):
        writer.save_relabelled(chosen.relabelled, chosen.new_labels)
    writer.save_checkpoint(model, 0)
    history: list[dict[str, float]] = []
    trace = _LossTrace(loss_every(config.epochs * steps_per_epoch))
    started = time.perf_counter()
    try:
        for epoch in range(1, config.epochs + 1):
            model.train()
            order = torch.randperm(len(train_x), generator=order_rng)
            losses, correct = [], 0
            for step in range(1, steps_per_epoch + 1):
                if should_stop is not None and should_stop():
                    raise _Stopped
                idx = order[(step - 1) * config.batch_size : step * config.batch_size]
                x, y = train_x[idx], train_y[idx]
                if config.augment:
                    x = augment_batch(x, augment_rng)
                x, y = x.to(device), y.to(device)
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()
                losses.append(loss.item())
                correct += int((logits.argmax(1) == y).sum())
                if epoch == 1 and step in in_epoch:
                    writer.save_checkpoint(model, in_epoch[step])
                points = trace.add((epoch - 1) * steps_per_epoch + step, losses[-1])
                if progress is not None:
                    progress(
                        TrainProgress(
                            epoch,
                            config.epochs,
                            step,
                            steps_per_epoch,
                            losses[-1],
                            history,
                            points,
                            time.perf_counter() - started,
                        )
                    )
            model.eval()
            val = predict(model, images[splits.val], data.labels[splits.val])
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": float(np.mean(losses)),
                    "train_accuracy": correct / (steps_per_epoch * config.batch_size),
                    "val_loss": val.loss,
                    "val_accuracy": val.accuracy,
                    "seconds": time.perf_counter() - started,
                }
            )
            writer.save_epoch(model, history)
    except _Stopped:
        if not history:
            writer.discard()
            return None
        model.load_state_dict(writer.last_state)
    model.eval()
    test = predict(model, images[splits.test], data.labels[splits.test])
    return writer.finish(test_accuracy=test.accuracy, stopped=len(history) < config.epochs)


class _Stopped(Exception):
    """Raised inside the loop when ``should_stop`` says so."""


@dataclass(frozen=True)
class TrainOutcome:
    """How a training job ended, and what a person should be told.

    Attributes:
        run: the run folder (``None``: nothing was kept).
        kept_epochs: complete epochs in the run.
        epochs: epochs asked for.
        stopped: ended by a stop before the last epoch.
        error: what went wrong, if training failed.
    """

    run: Path | None
    kept_epochs: int
    epochs: int
    stopped: bool
    error: str | None = None

    @classmethod
    def of(cls, run: Path | None, epochs: int, error: BaseException | None = None) -> TrainOutcome:
        """The outcome of :func:`train` returning ``run`` (or raising ``error``)."""
        if error is not None:
            return cls(None, 0, epochs, False, f"{type(error).__name__}: {error}")
        if run is None:
            return cls(None, 0, epochs, True)
        info = read_run(run)
        return cls(run, len(info.history), epochs, info.status == "stopped")

    @property
    def level(self) -> str:
        """``success``, ``warning`` or ``error``: how loudly to say it."""
        if self.error is not None:
            return "error"
        return "warning" if self.stopped else "success"

    @property
    def message(self) -> str:
        """What happened, in one or two sentences (Markdown)."""
        if self.error is not None:
            return f"Training failed: {self.error}"
        if self.run is None:
            return "Stopped before the first epoch completed: nothing was kept."
        n = self.kept_epochs
        kept = f"{n} epoch{'' if n == 1 else 's'}"
        if self.stopped:
            return f"Stopped after epoch {n}; kept {kept}. Run **{self.run.name}** holds them."
        return f"Trained **{self.run.name}**: {kept}."
