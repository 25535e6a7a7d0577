"""Where an extraction's images come from, and the hash that names them.

``--data`` is an image folder (one subfolder per class, see :mod:`core.data.folder`), a
dataset name (:data:`core.data.datasets.DATASETS`, ``--n`` images drawn or sampled with
``--seed``), or nothing: the run's own dataset. Images are adapted to the run's input shape.
The dataset hash is BLAKE2b over the images as the model sees them and their labels, so a
store records exactly which pixels it describes and resuming onto other pixels is refused.

What can go wrong: a dataset not on this machine (``DatasetUnavailableError``); a folder of
unreadable images (``EmptyDatasetError``). The images are held in memory (about 12 KB per
32x32 RGB image: 1.2 GB per 100,000); streaming from disk is left to the user's own loader.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from core.data.datasets import Dataset, adapt_images, load_dataset
from core.models.runs import RunInfo, load_dataset_for

FOLDER_LIMIT = 10_000_000
"""Most images read from a folder."""


def load_source(
    data: str | None, info: RunInfo, n: int | None = None, seed: int = 0
) -> tuple[Dataset, dict[str, Any]]:
    """The images to extract and a description of where they came from.

    Args:
        data: a folder path, a dataset name, or ``None`` for the run's own dataset.
        info: the run (its input shape, its dataset).
        n: how many images (dataset names only; default the dataset's own size).
        seed: drawing/sampling seed (dataset names only).

    Returns:
        ``(dataset with images adapted to the run, {"source": ..., "n": ..., "seed": ...})``.
    """
    c, h, _ = info.input_shape
    if data is None:
        dataset, source = load_dataset_for(info), f"run {info.name}'s dataset"
    elif Path(data).is_dir():
        from core.data.folder import load_image_folder

        loaded = load_image_folder(data, image_size=h, channels=c, max_images=FOLDER_LIMIT)
        dataset, source = loaded.dataset, f"folder {Path(data).resolve()}"
    else:
        size = h if data == "shapes" else None
        dataset, source = load_dataset(data, n=n, seed=seed, image_size=size), f"dataset {data}"
    images = adapt_images(dataset.images, info.input_shape)
    dataset = dataclasses.replace(dataset, images=np.ascontiguousarray(images))
    return dataset, {"source": source, "n": len(dataset), "seed": seed}


def dataset_hash(images: np.ndarray, labels: np.ndarray, block: int = 4096) -> str:
    """BLAKE2b of ``images [N, ...]`` float32 and ``labels [N]`` int64, block by block."""
    digest = hashlib.blake2b(digest_size=32)
    digest.update(f"{images.shape}|{images.dtype.str}|".encode())
    for start in range(0, len(images), block):
        digest.update(np.ascontiguousarray(images[start : start + block]).tobytes())
    digest.update(np.asarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()


def store_dataset(manifest: dict[str, Any]) -> Dataset | None:
    """The images a store describes, loaded again from its manifest (``None``: they were given
    in memory and cannot be reloaded).

    Raises:
        ValueError: the reloaded images differ from the ones extracted (their hash).
    """
    from core.models.runs import find_run, read_run

    source = manifest["dataset"]
    if source.get("source") == "given":
        return None
    info = read_run(find_run(manifest["run"]))
    data = source.get("data")
    dataset, _ = load_source(data, info, source["n"] if data else None, source["seed"])
    if dataset_hash(dataset.images, dataset.labels) != manifest["dataset_hash"]:
        raise ValueError(f"The images of {source['source']} changed since the extraction.")
    return dataset
