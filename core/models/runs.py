"""Runs: a trained (or imported) model as a folder, and the roots where runs live.

A run folder holds ``run.json`` (config, dataset descriptor, input shape, status, test accuracy,
weights hash), ``metrics.json`` (per-epoch history), ``model.safetensors`` (float32 weights of
the last complete epoch) and ``checkpoints/epoch_NNN.safetensors`` (float16, one per epoch, for
scrubbing training), plus ``epoch_000`` (the initial weights) and ``epoch_000.125``,
``epoch_000.250``, ``epoch_000.500`` (log-spaced inside the first epoch, where the first layer
changes most). Older runs have only the per-epoch files; :func:`list_checkpoints` lists what
there is. Every file is written atomically, so killing training mid-epoch leaves the last
complete epoch loadable.

A *run reference* names a run at a checkpoint: ``cnn-shapes@ckpt=0.5`` (half-way through the
first epoch) or ``cnn-shapes@epoch_002``. :func:`find_run` and :func:`load_run` take one
wherever they take a name, so every cache keyed on the name keys on the checkpoint too; the
loaded run's ``info.name`` is the reference, and its ``weights_sha256`` that of the checkpoint
(stored results never mix checkpoints).

Runs are looked up by name in the user's runs root (``$LAYERSCOPE_RUNS`` or a per-user data
folder) and in the runs shipped in ``assets/runs`` (read-only). A missing or half-written file
raises :class:`RunError` saying which file.

An imported run records what an auditor needs to read its numbers: the class order (output
``i`` is ``dataset.class_names[i]``), the input normalisation its weights expect (applied by
:func:`load_run` as a forward pre-hook on the model, so layer names and weights stay as they
are and every page sees the normalised input), and which images its accuracy was measured on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import platformdirs
import torch
from torch import nn

from core.analysis import Batch, Inputs
from core.data.datasets import (
    Dataset,
    DatasetInfo,
    Factor,
    Splits,
    adapt_images,
    split_indices,
    stratified_sample,
)
from core.device import pick_device
from core.files import read_json, save_state_dict, state_dict_hash, write_json
from core.models.zoo import build_model

if TYPE_CHECKING:
    from core.models.evaluation import Predictions
    from core.models.train import TrainConfig

SHIPPED_RUNS = Path(__file__).resolve().parents[2] / "assets" / "runs"
DEFAULT_RUN = "cnn-shapes"
EVALUATIONS = {
    "test": "the held-out test split (15 % of the images, the same ones every time)",
    "all": "all the images",
}
"""Which images an imported run's accuracy is measured on, by the key ``run.json`` records."""


class RunError(RuntimeError):
    """A run that does not exist or cannot be read."""


@dataclass(frozen=True)
class Normalization:
    """The input normalisation a model expects: ``(x - mean) / std`` per channel, x in [0, 1].

    Attributes:
        mean: one value per input channel.
        std: one positive value per input channel.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(
                f"Mean and std need one value per channel each; got {len(self.mean)} and "
                f"{len(self.std)}."
            )
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)):
            raise ValueError("Mean and std must be finite numbers.")
        if min(self.std) <= 0:
            raise ValueError("Every std must be greater than 0.")

    def describe(self) -> str:
        """One line for a person: ``mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)``."""

        def values(v: tuple[float, ...]) -> str:
            return ", ".join(f"{x:g}" for x in v)

        return f"(x − mean) / std with mean ({values(self.mean)}), std ({values(self.std)})"

    def to_json(self) -> dict[str, list[float]]:
        """As stored in ``run.json``."""
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_json(cls, obj: dict[str, list[float]] | None) -> Normalization | None:
        """From ``run.json`` (``None``: the model takes pixels in [0, 1] as they are)."""
        return None if not obj else cls(tuple(obj["mean"]), tuple(obj["std"]))


IMAGENET_NORMALIZATION = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
"""What torchvision's pretrained ImageNet weights expect."""
NO_NORMALIZATION_TEXT = "none: the model takes pixels in [0, 1] as they are"
NORMALIZATION_CHOICES = {
    "none": NO_NORMALIZATION_TEXT,
    "imagenet": "ImageNet mean and std (torchvision's pretrained weights expect these)",
    "custom": "my own mean and std",
}
"""Input normalisations an import offers, and what each means (:func:`chosen_normalization`)."""


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in re.split(r"[,\s]+", text.strip()) if v)
    except ValueError as err:
        raise ValueError(f"The {what} must be numbers separated by commas ({err}).") from err


def parse_normalization(mean: str, std: str) -> Normalization | None:
    """Reads a typed mean and std (``"0.485, 0.456, 0.406"``); both empty means none.

    One value each stands for every channel; otherwise give one value per channel (checked
    against the model by :func:`import_run`).

    Raises:
        ValueError: not numbers, one given without the other, unequal counts, or a std <= 0.
    """
    m, s = _floats(mean, "mean"), _floats(std, "std")
    if not m and not s:
        return None
    if not m or not s:
        raise ValueError("Give both a mean and a std, or neither.")
    return Normalization(m, s)


def chosen_normalization(choice: str, mean: str, std: str) -> Normalization | None:
    """The normalisation one of :data:`NORMALIZATION_CHOICES` names (``custom``: the typed one).

    Raises:
        ValueError: an unknown choice, or a typed mean and std :func:`parse_normalization` refuses.
    """
    if choice not in NORMALIZATION_CHOICES:
        raise ValueError(f"Unknown normalisation {choice!r}.")
    if choice == "custom":
        return parse_normalization(mean, std)
    return IMAGENET_NORMALIZATION if choice == "imagenet" else None


class _Normalize:
    """A forward pre-hook computing ``(x - mean) / std`` on the model's first input."""

    def __init__(self, norm: Normalization):
        self.mean = torch.tensor(norm.mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(norm.std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, _module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        return ((x - self.mean.to(x)) / self.std.to(x), *args[1:])


def apply_normalization(model: nn.Module, norm: Normalization | None) -> nn.Module:
    """Makes ``model`` normalise its input itself (a forward pre-hook); ``None`` leaves it be.

    Module names, the state dict and its hash do not change; a hook on any layer, a gradient
    with respect to the input and a deep copy all see the normalisation.
    """
    if norm is not None:
        model.register_forward_pre_hook(_Normalize(norm))
    return model


RELABELLED_FILE = "relabelled.json"
"""A label-noise run's record: ``{"indices": [...], "labels": [...]}`` into its dataset."""


def relabelled(info: RunInfo) -> tuple[np.ndarray, np.ndarray]:
    """``([M] dataset indices, [M] the random labels trained on)``; empty without label noise."""
    path = info.path / RELABELLED_FILE
    if not path.is_file():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    obj = read_json(path)
    return np.asarray(obj["indices"], np.int64), np.asarray(obj["labels"], np.int64)


def runs_root() -> Path:
    """The user's runs folder: ``$LAYERSCOPE_RUNS`` or the per-user data folder."""
    env = os.environ.get("LAYERSCOPE_RUNS")
    return Path(env) if env else Path(platformdirs.user_data_dir("layerscope")) / "runs"


def run_roots() -> list[Path]:
    """Where runs are looked up, in order: the user's root, then the shipped runs."""
    return [runs_root(), SHIPPED_RUNS]


FIRST_EPOCH_FRACTIONS = (0.125, 0.25, 0.5)
"""Where inside the first epoch a checkpoint is kept, besides the initial weights (epoch 0)."""
_CHECKPOINT_FILE = re.compile(r"epoch_(\d{3}(?:\.\d+)?)\.safetensors")
_REF = re.compile(r"^(?P<name>.+?)@(?:ckpt=(?P<ckpt>[0-9.]+)|epoch_(?P<epoch>[0-9.]+))$")


@dataclass(frozen=True)
class Checkpoint:
    """One saved state of a run's weights during training.

    Attributes:
        epoch: fractional epoch: 0 (initial weights), 0.125, ..., 1, 2, ...
        path: its float16 ``.safetensors`` file.
    """

    epoch: float
    path: Path

    @property
    def value(self) -> str:
        """The epoch as a URL value: ``0``, ``0.125``, ``2``."""
        return f"{self.epoch:g}"

    @property
    def label(self) -> str:
        """For a person: ``init``, ``epoch 1/8``, ``epoch 2``."""
        if self.epoch == 0:
            return "init"
        if self.epoch < 1:
            return f"epoch 1/{round(1 / self.epoch)}"
        return f"epoch {self.epoch:g}"


def checkpoint_file(epoch: float) -> str:
    """The file name of the checkpoint at ``epoch``: ``epoch_002``, ``epoch_000.125``."""
    whole = int(epoch)
    if epoch == whole:
        return f"epoch_{whole:03d}.safetensors"
    return f"epoch_{whole:03d}.{round((epoch - whole) * 1000):03d}.safetensors"


def list_checkpoints(info: RunInfo) -> list[Checkpoint]:
    """A run's checkpoints in training order (a run from before the initial and in-epoch
    checkpoints has only its per-epoch ones; an imported run has none)."""
    found = []
    for path in (info.path / "checkpoints").glob("epoch_*.safetensors"):
        match = _CHECKPOINT_FILE.fullmatch(path.name)
        if match:
            found.append(Checkpoint(float(match.group(1)), path))
    return sorted(found, key=lambda c: c.epoch)


def split_ref(ref: str) -> tuple[str, float | None]:
    """``("cnn-shapes", 0.5)`` for ``cnn-shapes@ckpt=0.5`` or ``cnn-shapes@epoch_000.500``;
    ``(name, None)`` for a plain name.

    Raises:
        RunError: a reference whose epoch is not a number.
    """
    match = _REF.match(ref)
    if match is None:
        return ref, None
    text = match.group("ckpt") or match.group("epoch")
    try:
        return match.group("name"), float(text)
    except ValueError as err:
        raise RunError(f"{ref!r}: {text!r} is not an epoch.") from err


def run_ref(name: str, checkpoint: float | str | None) -> str:
    """The reference to run ``name`` at ``checkpoint`` (``None``: the final weights)."""
    base = split_ref(name)[0]
    return base if checkpoint is None else f"{base}@ckpt={float(checkpoint):g}"


@dataclass(frozen=True)
class RunInfo:
    """A run's metadata, as read from its folder.

    Attributes:
        name: folder name, unique across roots.
        path: the folder.
        config: the training config as a dict (see :class:`core.train.TrainConfig`).
        dataset: the dataset descriptor.
        input_shape: the model's ``(C, H, W)``.
        status: ``complete``, ``stopped``, ``training`` or ``imported``.
        test_accuracy: on the run's test split (``None`` if not measured).
        weights_sha256: hash of the weights in ``model.safetensors``.
        history: per-epoch metrics.
        created: ISO time.
        shipped: one of the runs that ship with layerscope.
        checkpoint: the checkpoint loaded, when ``name`` is a run reference (else ``None``).
    """

    name: str
    path: Path
    config: dict[str, Any]
    dataset: DatasetInfo
    input_shape: tuple[int, int, int]
    status: str
    test_accuracy: float | None
    weights_sha256: str
    history: list[dict[str, float]]
    created: str
    shipped: bool
    checkpoint: Checkpoint | None = None

    @property
    def arch(self) -> str:
        """The architecture name."""
        return self.config["model"]

    @property
    def checkpoints(self) -> list[Path]:
        """Checkpoint files in training order (see :func:`list_checkpoints`)."""
        return [c.path for c in list_checkpoints(self)]

    @property
    def base_name(self) -> str:
        """The run's folder name (``name`` without a checkpoint reference)."""
        return split_ref(self.name)[0]

    @property
    def normalization(self) -> Normalization | None:
        """The input normalisation the weights expect (``None``: pixels in [0, 1])."""
        return Normalization.from_json(self.config.get("normalization"))

    @property
    def evaluated_on(self) -> str:
        """Which images the test accuracy is measured on: a key of :data:`EVALUATIONS`."""
        return self.config.get("evaluation") or "test"

    @property
    def evaluated_splits(self) -> tuple[str, ...]:
        """The splits whose predictions, together, make the reported accuracy."""
        return ("train", "val", "test") if self.evaluated_on == "all" else ("test",)


@dataclass(frozen=True)
class LoadedRun:
    """A run ready to analyse.

    Attributes:
        info: the run's metadata.
        model: the model in eval mode, on the compute device.
        dataset: the full dataset, images adapted to the model's input shape.
        splits: the run's train/val/test indices into ``dataset``.
    """

    info: RunInfo
    model: nn.Module
    dataset: Dataset
    splits: Splits


def _dataset_info(obj: dict[str, Any]) -> DatasetInfo:
    return DatasetInfo(
        name=obj["name"],
        class_names=tuple(obj["class_names"]),
        input_shape=tuple(obj["input_shape"]),
        factors=tuple(Factor(f["name"], tuple(f["categories"])) for f in obj["factors"]),
        source=obj.get("source", ""),
    )


def read_run(path: Path) -> RunInfo:
    """Reads a run folder's metadata.

    Raises:
        RunError: ``run.json`` or ``metrics.json`` missing or unreadable.
    """
    try:
        meta = read_json(path / "run.json")
        history = read_json(path / "metrics.json")
    except (OSError, json.JSONDecodeError) as err:
        raise RunError(f"Run {path.name} cannot be read: {err}.") from err
    try:
        return RunInfo(
            name=path.name,
            path=path,
            config=meta["config"],
            dataset=_dataset_info(meta["dataset"]),
            input_shape=tuple(meta["input_shape"]),
            status=meta["status"],
            test_accuracy=meta.get("test_accuracy"),
            weights_sha256=meta.get("weights_sha256", ""),
            history=history,
            created=meta.get("created", ""),
            shipped=path.parent.resolve() == SHIPPED_RUNS,
        )
    except (KeyError, TypeError) as err:
        raise RunError(f"Run {path.name}: run.json lacks {err}.") from err


def scan_runs(roots: list[Path] | None = None) -> tuple[list[RunInfo], list[RunError]]:
    """Every run under ``roots`` (default :func:`run_roots`), first root winning a name.

    Returns:
        The readable runs, and one error for each folder that could not be read.
    """
    found: dict[str, RunInfo] = {}
    errors: list[RunError] = []
    for root in roots or run_roots():
        for path in sorted(root.glob("*/run.json")) if root.is_dir() else []:
            if path.parent.name not in found:
                try:
                    found[path.parent.name] = read_run(path.parent)
                except RunError as err:
                    errors.append(err)
    return list(found.values()), errors


def list_runs(roots: list[Path] | None = None) -> list[RunInfo]:
    """Every readable run under ``roots`` (see :func:`scan_runs`)."""
    return scan_runs(roots)[0]


def find_run(name: str, roots: list[Path] | None = None) -> Path:
    """The folder of the run called ``name`` (or a run reference, see :func:`split_ref`).

    Raises:
        RunError: no such run.
    """
    name = split_ref(name)[0]
    for root in roots or run_roots():
        if (root / name / "run.json").is_file():
            return root / name
    raise RunError(f"No run named {name!r}.")


def load_dataset_for(info: RunInfo) -> Dataset:
    """The dataset a run was trained on, regenerated or reloaded from its config."""
    from core.data.datasets import Shortcut, load_dataset
    from core.data.folder import load_image_folder

    cfg = info.config
    if cfg["dataset"] == "folder":
        return load_image_folder(cfg["dataset_path"], image_size=info.input_shape[1]).dataset
    return load_dataset(
        cfg["dataset"],
        n=cfg.get("n_samples"),
        seed=cfg["seed"],
        image_size=cfg.get("image_size"),
        shortcut=Shortcut.parse(cfg.get("shortcut")),
    )


def load_run(
    name: str, roots: list[Path] | None = None, device: str | None = None, epoch: int | None = None
) -> LoadedRun:
    """Loads a run's model (on the compute device) and dataset.

    Args:
        name: the run's name, or a run reference (``cnn-shapes@ckpt=0.5``) to load that
            checkpoint: ``info.name`` is then the reference and ``info.weights_sha256`` the
            checkpoint's hash.
        roots: where to look (default :func:`run_roots`).
        device: override the compute device.
        epoch: load this epoch's checkpoint instead of the final weights.

    Raises:
        RunError: the run or one of its files is missing or unreadable.
    """
    base, ckpt = split_ref(name)
    info = read_run(find_run(base, roots))
    model = _model(info, info.path / "model.safetensors")
    try:
        data = load_dataset_for(info)
    except (ValueError, OSError, RuntimeError) as err:
        raise RunError(f"Run {name}: its images cannot be loaded. {err}") from err
    data = dataclasses.replace(data, images=adapt_images(data.images, info.input_shape))
    splits = split_indices(len(data), info.config["seed"])
    run = LoadedRun(info, model.to(pick_device(device)).eval(), data, splits)
    ckpt = float(epoch) if epoch is not None else ckpt
    return run if ckpt is None else at_checkpoint(run, ckpt)


def _model(info: RunInfo, weights: Path) -> nn.Module:
    """The run's architecture with ``weights``, normalising its input as the run says."""
    if not weights.is_file():
        raise RunError(f"Run {info.name}: {weights.name} is missing.")
    num_classes = len(info.dataset.class_names)
    try:
        model = build_model(info.arch, info.input_shape, num_classes, weights=weights)
    except ValueError as err:
        raise RunError(f"Run {info.name}: {err}") from err
    return apply_normalization(model, info.normalization)


def at_checkpoint(run: LoadedRun, epoch: float) -> LoadedRun:
    """The same run (dataset shared, not copied) with the weights of its checkpoint at
    ``epoch``; ``info.name`` is the run reference, ``info.weights_sha256`` the checkpoint's hash.

    Raises:
        RunError: no checkpoint at that epoch (the message lists those there are).
    """
    base = split_ref(run.info.name)[0]
    info = read_run(run.info.path)
    point = Checkpoint(float(epoch), info.path / "checkpoints" / checkpoint_file(epoch))
    if not point.path.is_file():
        have = ", ".join(c.value for c in list_checkpoints(info)) or "none"
        raise RunError(f"Run {base} has no checkpoint at epoch {epoch:g} (it has: {have}).")
    model = _model(info, point.path)
    info = dataclasses.replace(
        info,
        name=run_ref(base, epoch),
        weights_sha256=state_dict_hash(model.state_dict()),
        checkpoint=point,
    )
    device = next(run.model.parameters()).device
    return dataclasses.replace(run, info=info, model=model.to(device).eval())


def delete_run(name: str) -> None:
    """Deletes a run from the user's root (shipped runs cannot be deleted).

    An image folder that was unpacked from an upload for this run alone goes with it.

    Raises:
        RunError: no such run in the user's root.
    """
    path = runs_root() / split_ref(name)[0]
    if not (path / "run.json").is_file():
        raise RunError(f"No run named {name!r} among your runs (shipped runs stay).")
    images = _uploaded_images(read_run(path))
    shutil.rmtree(path)
    if images is not None and not any(_uploaded_images(r) == images for r in list_runs()):
        shutil.rmtree(images, ignore_errors=True)


def _uploaded_images(info: RunInfo) -> Path | None:
    """The run's image folder, if it was unpacked from an upload (under the uploads folder)."""
    from core.data.uploads import uploads_dir  # here: core.data.uploads imports this module

    folder = info.config.get("dataset_path")
    if info.config.get("dataset") != "folder" or not folder:
        return None
    folder = Path(folder).resolve()
    return folder if folder.is_relative_to(uploads_dir().resolve()) else None


def combine_predictions(parts: list[Predictions]) -> Predictions:
    """Predictions over several splits as one (e.g. all the images of an imported run)."""
    from core.models.evaluation import Predictions

    labels = np.concatenate([p.labels for p in parts])
    predicted = np.concatenate([p.predicted for p in parts])
    sizes = np.array([len(p.labels) for p in parts], dtype=float)
    losses = np.array([p.loss for p in parts], dtype=float)
    return Predictions(
        probs=np.concatenate([p.probs for p in parts]),
        predicted=predicted,
        labels=labels,
        loss=float((losses * sizes).sum() / sizes.sum()) if sizes.sum() else float("nan"),
        accuracy=float((predicted == labels).mean()) if len(labels) else float("nan"),
    )


def evaluation_text(info: RunInfo, n_scored: int, n_images: int) -> str:
    """Which images the accuracy was measured on, for a person."""
    if info.evaluated_on == "all":
        return f"Measured on all {n_images:,} images (none held out: trained elsewhere)."
    return f"Measured on {EVALUATIONS['test']}: {n_scored:,} of {n_images:,} images."


def unique_name(base: str, root: Path) -> str:
    """``base`` made safe for a folder name and unique among all run roots."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.") or "run"
    taken = {p.name for r in (root, *run_roots()) if r.is_dir() for p in r.iterdir()}
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


class RunWriter:
    """Writes a run folder as training goes: one atomic checkpoint per epoch."""

    def __init__(self, path: Path, meta: dict[str, Any]):
        self.path = path
        self.meta = meta
        self.last_state: dict[str, torch.Tensor] = {}

    @classmethod
    def create(
        cls,
        config: TrainConfig | dict[str, Any],
        dataset: DatasetInfo,
        input_shape: tuple[int, int, int],
        *,
        name: str | None = None,
        root: str | Path | None = None,
        status: str = "training",
    ) -> RunWriter:
        """Makes a new, uniquely named run folder and writes its ``run.json``."""
        cfg = config if isinstance(config, dict) else asdict(config)
        root = Path(root) if root else runs_root()
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = root / unique_name(name or f"{cfg['model']}-{dataset.name}-{stamp}", root)
        path.mkdir(parents=True)
        meta = {
            "config": cfg,
            "dataset": asdict(dataset),
            "input_shape": list(input_shape),
            "status": status,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        writer = cls(path, meta)
        write_json(path / "metrics.json", [])
        write_json(path / "run.json", meta)
        return writer

    def save_checkpoint(self, model: nn.Module, epoch: float) -> dict[str, torch.Tensor]:
        """Writes the float16 checkpoint at fractional ``epoch``; returns the float32 state."""
        state = _cpu_state(model)
        half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        save_state_dict(self.path / "checkpoints" / checkpoint_file(epoch), half)
        return state

    def save_epoch(self, model: nn.Module, history: list[dict[str, float]]) -> None:
        """Writes the epoch's checkpoint, the current weights and the metrics, atomically."""
        self.last_state = self.save_checkpoint(model, len(history))
        self.save_weights(self.last_state)
        write_json(self.path / "metrics.json", history)

    def save_relabelled(self, indices: np.ndarray, labels: np.ndarray) -> None:
        """Records which training samples (dataset indices) got which random label."""
        obj = {"indices": indices.tolist(), "labels": labels.tolist()}
        write_json(self.path / RELABELLED_FILE, obj)

    def save_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Writes ``model.safetensors`` and records its hash in ``run.json``."""
        save_state_dict(self.path / "model.safetensors", state)
        self.meta["weights_sha256"] = state_dict_hash(state)
        write_json(self.path / "run.json", self.meta)

    def finish(self, test_accuracy: float | None, stopped: bool = False) -> Path:
        """Marks the run complete (or stopped) with its test accuracy."""
        if self.meta["status"] == "training":
            self.meta["status"] = "stopped" if stopped else "complete"
        self.meta["test_accuracy"] = test_accuracy
        write_json(self.path / "run.json", self.meta)
        return self.path

    def discard(self) -> None:
        """Deletes the folder (a run stopped before its first epoch)."""
        shutil.rmtree(self.path, ignore_errors=True)


def import_run(
    arch: str,
    weights: str | Path,
    dataset: str = "shapes",
    *,
    image_size: int | None = None,
    n_samples: int | None = None,
    dataset_path: str | Path | None = None,
    name: str | None = None,
    root: str | Path | None = None,
    normalization: Normalization | None = None,
    evaluate: str = "test",
    weights_name: str | None = None,
) -> Path:
    """Makes a run from a weights file the user brings, and scores it.

    Args:
        arch: architecture name (built-in or ``tv:<name>``).
        weights: ``.safetensors``/``.pt``/``.pth`` state dict for ``arch``.
        dataset: dataset name, or ``folder`` with ``dataset_path``.
        image_size: the model's input side (default: the dataset's).
        n_samples: dataset size, as in :class:`core.train.TrainConfig`.
        dataset_path: an image folder, for ``dataset="folder"`` (classes: its subfolders,
            sorted by name, as torchvision's ``ImageFolder``).
        name: the run's name (made unique).
        root: runs root (default :func:`runs_root`).
        normalization: what the weights expect of their input (``None``: pixels in [0, 1]).
        evaluate: score on the held-out ``test`` split or on ``all`` the images
            (see :data:`EVALUATIONS`).
        weights_name: the weights file's name as the person knows it (default: its own).

    Raises:
        core.models.WeightsMismatchError, core.io.UnsafeFileError: the file does not fit;
        core.folder.TooFewClassesError: the folder has fewer than two classes;
        ValueError: a normalisation for another channel count, or an unknown ``evaluate``.
        Nothing is written when any of these is raised.
    """
    from core.data.datasets import load_dataset
    from core.data.folder import load_image_folder
    from core.files import load_state_dict
    from core.models.evaluation import predict
    from core.models.zoo import TORCHVISION_PREFIX

    if evaluate not in EVALUATIONS:
        raise ValueError(f"evaluate must be one of {', '.join(EVALUATIONS)}, not {evaluate!r}.")
    if dataset == "folder":
        data = load_image_folder(dataset_path, image_size=image_size or 32).dataset
    else:
        data = load_dataset(dataset, n=n_samples, seed=0, image_size=image_size)
    c, h, w = data.info.input_shape
    input_shape = (3 if arch.startswith(TORCHVISION_PREFIX) else c, h, w)
    if normalization is not None and len(normalization.mean) not in (1, input_shape[0]):
        raise ValueError(
            f"The model takes {input_shape[0]} channel(s), but the normalisation has "
            f"{len(normalization.mean)} values: give one per channel, or one for all."
        )
    state = load_state_dict(weights)
    model = build_model(arch, input_shape, len(data.info.class_names), weights=state)
    apply_normalization(model, normalization)
    config = {
        "model": arch,
        "dataset": dataset,
        "n_samples": n_samples,
        "image_size": image_size,
        "epochs": 0,
        "seed": 0,
        "dataset_path": str(dataset_path) if dataset_path else None,
        "weights_file": weights_name or Path(weights).name,
        "normalization": normalization.to_json() if normalization else None,
        "evaluation": evaluate,
    }
    images = adapt_images(data.images, input_shape)
    scored = np.arange(len(data)) if evaluate == "all" else split_indices(len(data), 0).test
    accuracy = predict(model, images[scored], data.labels[scored]).accuracy
    stem = name or f"{arch.removeprefix(TORCHVISION_PREFIX)}-{data.info.name}"
    writer = RunWriter.create(
        config, data.info, input_shape, name=stem, root=root, status="imported"
    )
    writer.save_weights(state)
    return writer.finish(test_accuracy=accuracy)


def inputs_batch(run: LoadedRun, inputs: Inputs) -> Batch:
    """The dataset images ``inputs`` names in ``run`` (a split, positions in it, or a stratified
    sample of it) as an analysis batch, with their factors and object masks when recorded.
    ``inputs.upload`` is not read here: an uploaded image lives with its session."""
    splits, data = run.splits, run.dataset
    named = {"held_out": np.concatenate([splits.val, splits.test]), "all": np.arange(len(data))}
    idx = named[inputs.split] if inputs.split in named else getattr(splits, inputs.split)
    if inputs.indices is not None:
        idx = idx[list(inputs.indices)]
    elif inputs.n is not None:
        idx = idx[stratified_sample(data.labels[idx], inputs.n, inputs.seed)]
    chosen = data.subset(idx)
    classes = run.info.dataset.class_names
    return Batch(chosen.images, chosen.labels, chosen.factors, classes, chosen.masks)
