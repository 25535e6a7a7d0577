"""Runs: a trained (or imported) model as a folder, and the roots where runs live.

A run folder holds ``run.json`` (config, dataset descriptor, input shape, status, test accuracy,
weights hash), ``metrics.json`` (per-epoch history), ``model.safetensors`` (float32 weights of
the last complete epoch) and ``checkpoints/epoch_NNN.safetensors`` (float16, one per epoch, for
scrubbing training). Every file is written atomically at the end of an epoch, so killing
training mid-epoch leaves the last complete epoch loadable.

Runs are looked up by name in the user's runs root (``$LAYERSCOPE_RUNS`` or a per-user data
folder) and in the runs shipped in ``assets/runs`` (read-only). A missing or half-written file
raises :class:`RunError` saying which file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs
import torch
from torch import nn

from core.data import Dataset, DatasetInfo, Factor, Splits, adapt_images, split_indices
from core.device import pick_device
from core.io import read_json, save_state_dict, state_dict_hash, write_json
from core.models import build_model

if TYPE_CHECKING:
    from core.train import TrainConfig

SHIPPED_RUNS = Path(__file__).resolve().parent.parent / "assets" / "runs"
DEFAULT_RUN = "cnn-shapes"


class RunError(RuntimeError):
    """A run that does not exist or cannot be read."""


def runs_root() -> Path:
    """The user's runs folder: ``$LAYERSCOPE_RUNS`` or the per-user data folder."""
    env = os.environ.get("LAYERSCOPE_RUNS")
    return Path(env) if env else Path(platformdirs.user_data_dir("layerscope")) / "runs"


def run_roots() -> list[Path]:
    """Where runs are looked up, in order: the user's root, then the shipped runs."""
    return [runs_root(), SHIPPED_RUNS]


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

    @property
    def arch(self) -> str:
        """The architecture name."""
        return self.config["model"]

    @property
    def checkpoints(self) -> list[Path]:
        """Per-epoch checkpoints, oldest first."""
        return sorted((self.path / "checkpoints").glob("epoch_*.safetensors"))


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
    """The folder of the run called ``name``.

    Raises:
        RunError: no such run.
    """
    for root in roots or run_roots():
        if (root / name / "run.json").is_file():
            return root / name
    raise RunError(f"No run named {name!r}.")


def load_dataset_for(info: RunInfo) -> Dataset:
    """The dataset a run was trained on, regenerated or reloaded from its config."""
    from core.data import load_dataset
    from core.folder import load_image_folder

    cfg = info.config
    if cfg["dataset"] == "folder":
        return load_image_folder(cfg["dataset_path"], image_size=info.input_shape[1]).dataset
    return load_dataset(
        cfg["dataset"], n=cfg.get("n_samples"), seed=cfg["seed"], image_size=cfg.get("image_size")
    )


def load_run(
    name: str, roots: list[Path] | None = None, device: str | None = None, epoch: int | None = None
) -> LoadedRun:
    """Loads a run's model (on the compute device) and dataset.

    Args:
        name: the run's name.
        roots: where to look (default :func:`run_roots`).
        device: override the compute device.
        epoch: load this epoch's checkpoint instead of the final weights.

    Raises:
        RunError: the run or one of its files is missing or unreadable.
    """
    info = read_run(find_run(name, roots))
    weights = info.path / "model.safetensors"
    if epoch is not None:
        weights = info.path / "checkpoints" / f"epoch_{epoch:03d}.safetensors"
    if not weights.is_file():
        raise RunError(f"Run {name}: {weights.name} is missing.")
    num_classes = len(info.dataset.class_names)
    try:
        model = build_model(info.arch, info.input_shape, num_classes, weights=weights)
    except ValueError as err:
        raise RunError(f"Run {name}: {err}") from err
    data = load_dataset_for(info)
    data = dataclasses.replace(data, images=adapt_images(data.images, info.input_shape))
    splits = split_indices(len(data), info.config["seed"])
    return LoadedRun(info, model.to(pick_device(device)).eval(), data, splits)


def delete_run(name: str) -> None:
    """Deletes a run from the user's root (shipped runs cannot be deleted).

    Raises:
        RunError: no such run in the user's root.
    """
    path = runs_root() / name
    if not (path / "run.json").is_file():
        raise RunError(f"No run named {name!r} among your runs (shipped runs stay).")
    shutil.rmtree(path)


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

    def save_epoch(self, model: nn.Module, history: list[dict[str, float]]) -> None:
        """Writes the epoch's checkpoint, the current weights and the metrics, atomically."""
        self.last_state = _cpu_state(model)
        half = {k: v.half() if v.is_floating_point() else v for k, v in self.last_state.items()}
        save_state_dict(self.path / "checkpoints" / f"epoch_{len(history):03d}.safetensors", half)
        self.save_weights(self.last_state)
        write_json(self.path / "metrics.json", history)

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
) -> Path:
    """Makes a run from a weights file the user brings, scored on the dataset's test split.

    Args:
        arch: architecture name (built-in or ``tv:<name>``).
        weights: ``.safetensors``/``.pt``/``.pth`` state dict for ``arch``.
        dataset: dataset name, or ``folder`` with ``dataset_path``.
        image_size: the model's input side (default: the dataset's).
        n_samples: dataset size, as in :class:`core.train.TrainConfig`.
        dataset_path: an image folder, for ``dataset="folder"``.
        name: the run's name (made unique).
        root: runs root (default :func:`runs_root`).

    Raises:
        core.models.WeightsMismatchError, core.io.UnsafeFileError: the file does not fit;
            nothing is written.
    """
    from core.data import load_dataset
    from core.evaluation import predict
    from core.folder import load_image_folder
    from core.io import load_state_dict
    from core.models import TORCHVISION_PREFIX

    if dataset == "folder":
        data = load_image_folder(dataset_path, image_size=image_size or 32).dataset
    else:
        data = load_dataset(dataset, n=n_samples, seed=0, image_size=image_size)
    c, h, w = data.info.input_shape
    input_shape = (3 if arch.startswith(TORCHVISION_PREFIX) else c, h, w)
    state = load_state_dict(weights)
    model = build_model(arch, input_shape, len(data.info.class_names), weights=state)
    config = {
        "model": arch,
        "dataset": dataset,
        "n_samples": n_samples,
        "image_size": image_size,
        "epochs": 0,
        "seed": 0,
        "dataset_path": str(dataset_path) if dataset_path else None,
        "weights_file": Path(weights).name,
    }
    images = adapt_images(data.images, input_shape)
    test = split_indices(len(data), 0).test
    accuracy = predict(model, images[test], data.labels[test]).accuracy
    stem = name or f"{arch.removeprefix(TORCHVISION_PREFIX)}-{data.info.name}"
    writer = RunWriter.create(
        config, data.info, input_shape, name=stem, root=root, status="imported"
    )
    writer.save_weights(state)
    return writer.finish(test_accuracy=accuracy)
