"""Datasets: determinism, factors independent of labels, real on-disk formats, clear errors."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest

from core.data.datasets import (
    DatasetUnavailableError,
    adapt_images,
    load_dataset,
    make_shapes,
    read_idx,
    split_indices,
    stratified_sample,
)


def test_shapes_deterministic_and_complete() -> None:
    a, b = make_shapes(200, seed=3), make_shapes(200, seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.shape == (200, 3, 32, 32) and a.images.dtype == np.float32
    assert a.images.min() >= 0.0 and a.images.max() <= 1.0
    assert len(a.info.class_names) >= 6
    assert {f.name for f in a.info.factors} >= {"colour", "texture", "size", "position",
                                                  "rotation", "background"}  # fmt: skip
    for factor in a.info.factors:
        assert a.factors[factor.name].max() < len(factor.categories)
    assert not np.array_equal(make_shapes(50, seed=4).images, a.images[:50])


def test_shapes_factors_independent_of_label() -> None:
    data = make_shapes(6000, seed=0)
    # Colour frequency within each class stays near uniform: no label leaks through colour.
    for label in range(len(data.info.class_names)):
        colours = np.bincount(data.factors["colour"][data.labels == label], minlength=8)
        assert colours.min() / colours.max() > 0.6


def test_shapes_size_changes_pixels() -> None:
    data = make_shapes(3000, seed=1)
    dark = data.factors["background"] == 0
    area = (np.abs(data.images - 0.1).sum(axis=1) > 0.05).mean(axis=(1, 2))
    small = area[dark & (data.factors["size"] == 0)].mean()
    large = area[dark & (data.factors["size"] == 2)].mean()
    assert large > 1.5 * small


def test_splits_deterministic_and_disjoint() -> None:
    s = split_indices(1000, seed=5)
    t = split_indices(1000, seed=5)
    np.testing.assert_array_equal(s.val, t.val)
    all_idx = np.concatenate([s.train, s.val, s.test])
    assert sorted(all_idx.tolist()) == list(range(1000))


def test_stratified_sample_keeps_proportions() -> None:
    labels = np.repeat([0, 1, 2], [500, 300, 200])
    idx = stratified_sample(labels, 100, seed=0)
    assert np.bincount(labels[idx]).tolist() == [50, 30, 20]


def test_digits_real() -> None:
    data = load_dataset("digits")
    assert data.images.shape == (1797, 1, 8, 8)
    assert load_dataset("digits", image_size=16).images.shape == (1797, 1, 16, 16)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_from_idx_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("t10k", 8)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    data = load_dataset("fashion-mnist", root=tmp_path)
    assert data.images.shape == (20, 1, 28, 28)
    assert data.labels.tolist()[:12] == [i % 10 for i in range(12)]
    raw = read_idx(tmp_path / "train-images-idx3-ubyte.gz")
    np.testing.assert_allclose(data.images[:12, 0], raw / 255.0)


def test_mnist_from_torchvision_root(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 10), ("t10k", 5)):
        images = rng.integers(0, 256, (n, 28, 28))
        for name, array in ((f"{split}-images-idx3-ubyte", images),
                            (f"{split}-labels-idx1-ubyte", np.arange(n) % 10)):  # fmt: skip
            _write_idx(raw / f"{name}.gz", array)
            with gzip.open(raw / f"{name}.gz") as f:
                (raw / name).write_bytes(f.read())
    data = load_dataset("mnist", root=tmp_path)
    assert data.images.shape == (15, 1, 28, 28)
    assert data.info.class_names[3] == "three"


def test_cifar10_from_torchvision_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [1, 2]}
        (folder / name).write_bytes(pickle.dumps(batch))
    classes = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]  # fmt: skip
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": classes}))
    # torchvision checks the md5 of the real files; these tiny ones are in the same format.
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *a, **k: True)
    data = load_dataset("cifar10", root=tmp_path)
    assert data.images.shape == (12, 3, 32, 32) and data.labels.tolist()[:2] == [1, 2]


@pytest.mark.parametrize("name", ["mnist", "cifar10", "fashion-mnist"])
def test_missing_dataset_says_what_to_do(tmp_path: Path, name: str, monkeypatch) -> None:
    monkeypatch.setattr("core.data.datasets.DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(DatasetUnavailableError, match="download"):
        load_dataset(name, root=tmp_path)


def test_adapt_images_channels_and_size() -> None:
    grey = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    rgb = adapt_images(grey, (3, 16, 16))
    assert rgb.shape == (4, 3, 16, 16)
    np.testing.assert_array_equal(rgb[:, 0], rgb[:, 2])
    assert adapt_images(rgb, (1, 16, 16)).shape == (4, 1, 16, 16)


def test_download_offline_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.error import URLError

    def offline(*_args, **_kwargs):
        raise URLError("no network")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", offline)
    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", offline)
    with pytest.raises(DatasetUnavailableError, match="allow downloading when online"):
        load_dataset("mnist", root=tmp_path, download=True)
