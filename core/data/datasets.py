"""Datasets: one descriptor each, images as ``[N, C, H, W]`` float32 in ``[0, 1]``.

``shapes`` is the embedded default: procedurally drawn RGB shapes whose every generating
factor (colour, texture, size, position, rotation, background) is recorded and varies
independently of the label, so a network must learn shape, not colour, and later pages can
probe each layer for each factor. ``digits`` is scikit-learn's real 8x8 digits.
``fashion-mnist`` is read from Debian's ``dataset-fashion-mnist`` package or a torchvision root;
``mnist`` and ``cifar10`` come through torchvision from a local root, downloaded only when the
caller allows it. ``folder`` is a user's image folder or zip (see :mod:`core.data.folder`).

What can go wrong: a dataset that is not on disk while offline raises
:class:`DatasetUnavailableError`, whose message says what to install or where to put files.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DATASETS = ("shapes", "digits", "fashion-mnist", "mnist", "cifar10")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


class DatasetUnavailableError(RuntimeError):
    """The dataset's files are not on this machine and downloading was not allowed or failed."""


@dataclass(frozen=True)
class Factor:
    """A per-sample generating factor: its name and the names of its categories.

    Attributes:
        name: the factor's name (``colour``, ``size``, ...).
        categories: one name per category code.
        colours: one CSS colour per category when the categories *are* colours (the colour
            factor of ``shapes``: each drawn in the colour it names), else empty; figures then
            use a qualitative palette.
    """

    name: str
    categories: tuple[str, ...]
    colours: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, without its data.

    Attributes:
        name: registry name (``shapes``, ``digits``, ...) or ``folder:<name>``.
        class_names: one name per label.
        input_shape: ``(C, H, W)`` of one image.
        factors: per-sample factors recorded beside the label (empty for most real data).
        source: where the data came from, for a person.
    """

    name: str
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]
    factors: tuple[Factor, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class Dataset:
    """Images, labels and factors.

    Attributes:
        info: the descriptor.
        images: ``[N, C, H, W]`` float32 in ``[0, 1]``.
        labels: ``[N]`` int64 class indices.
        factors: factor name -> ``[N]`` int64 category indices.
        masks: ``[N, H, W]`` bool, the pixels of each image's object where the dataset draws
            it (``shapes``), else ``None``.
    """

    info: DatasetInfo
    images: np.ndarray
    labels: np.ndarray
    factors: dict[str, np.ndarray]
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> Dataset:
        """The samples at ``indices``, in that order."""
        return Dataset(
            self.info,
            self.images[indices],
            self.labels[indices],
            {k: v[indices] for k, v in self.factors.items()},
            None if self.masks is None else self.masks[indices],
        )


@dataclass(frozen=True)
class Splits:
    """Disjoint index arrays into a dataset: ``[N_train]``, ``[N_val]``, ``[N_test]``."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_indices(n: int, seed: int, val: float = 0.15, test: float = 0.15) -> Splits:
    """A deterministic random train/val/test split of ``range(n)``."""
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = round(n * val), round(n * test)
    return Splits(
        train=np.sort(order[n_val + n_test :]),
        val=np.sort(order[:n_val]),
        test=np.sort(order[n_val : n_val + n_test]),
    )


def stratified_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``min(n, len(labels))`` indices with classes in their dataset proportions, sorted."""
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts / counts.sum() * n).astype(int)
    for i in np.argsort(-(counts / counts.sum() * n - quota))[: n - quota.sum()]:
        quota[i] += 1
    picked = [
        rng.choice(np.flatnonzero(labels == c), size=q, replace=False)
        for c, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(picked))


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resizes ``[N, C, H, W]`` images to ``[N, C, size, size]`` (bilinear, antialiased)."""
    if images.shape[-2:] == (size, size):
        return images
    out = F.interpolate(
        torch.from_numpy(np.ascontiguousarray(images)),
        size=(size, size),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    return out.clamp_(0, 1).numpy()


def adapt_images(images: np.ndarray, input_shape: tuple[int, int, int]) -> np.ndarray:
    """Makes ``[N, C, H, W]`` images fit a model's ``(C', H', W')``: channels, then size.

    Grey to RGB repeats the channel; RGB to grey averages. Spatial size is resized.
    """
    channels, h, w = input_shape
    if images.shape[1] != channels:
        if images.shape[1] == 1:
            images = np.repeat(images, channels, axis=1)
        elif channels == 1:
            images = images.mean(axis=1, keepdims=True)
        else:
            raise ValueError(f"Cannot map {images.shape[1]} channels to {channels}.")
    if images.shape[-2:] != (h, w):
        if h != w:
            raise ValueError(f"Only square inputs are supported, not {h}x{w}.")
        images = resize_images(images, h)
    return images.astype(np.float32, copy=False)


# --- shapes -------------------------------------------------------------------------------------

SHAPE_CLASSES = ("circle", "square", "triangle", "cross", "star", "ring")
COLOURS = {
    "red": (0.9, 0.15, 0.15),
    "orange": (0.95, 0.55, 0.1),
    "yellow": (0.95, 0.9, 0.15),
    "green": (0.2, 0.75, 0.25),
    "cyan": (0.15, 0.8, 0.85),
    "blue": (0.2, 0.3, 0.95),
    "purple": (0.6, 0.25, 0.85),
    "pink": (0.95, 0.45, 0.75),
}


def css_colour(rgb: tuple[float, float, float]) -> str:
    """``(r, g, b)`` in ``[0, 1]`` -> ``"rgb(R, G, B)"``, a CSS colour."""
    return "rgb({}, {}, {})".format(*(round(255 * c) for c in rgb))


def named_colours(categories: Sequence[str]) -> tuple[str, ...]:
    """One CSS colour per category when every category is a colour ``shapes`` draws (``red``,
    ``yellow``, ...: the colour it is drawn in), else ``()``.
    """
    if not categories or any(name not in COLOURS for name in categories):
        return ()
    return tuple(css_colour(COLOURS[name]) for name in categories)


SHAPE_FACTORS = (
    Factor("colour", tuple(COLOURS), named_colours(tuple(COLOURS))),
    Factor("texture", ("solid", "stripes", "checker", "dots")),
    Factor("size", ("small", "medium", "large")),
    Factor("position", tuple(f"{r}-{c}" for r in ("top", "mid", "bottom") for c in "lcr")),
    Factor("rotation", ("0-90", "90-180", "180-270", "270-360")),
    Factor("background", ("dark", "light", "noise", "gradient")),
)


def _shape_masks(labels: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-masks ``[N, H, W]`` for each sample's shape, in its own rotated unit frame."""

    def rho(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.sqrt(u * u + v * v)

    tests = {
        0: lambda u, v: rho(u, v) <= 0.95,
        1: lambda u, v: np.maximum(abs(u), abs(v)) <= 0.8,
        2: lambda u, v: (v >= -0.55) & (v <= 1.0 - 1.732 * abs(u)),
        3: lambda u, v: ((abs(u) <= 0.3) | (abs(v) <= 0.3)) & (np.maximum(abs(u), abs(v)) <= 0.95),
        4: lambda u, v: rho(u, v) <= 0.55 + 0.45 * np.cos(5 * np.arctan2(v, u)),
        5: lambda u, v: (rho(u, v) <= 0.95) & (rho(u, v) >= 0.55),
    }
    masks = np.zeros(u.shape, dtype=bool)
    for label, inside in tests.items():
        idx = np.flatnonzero(labels == label)
        masks[idx] = inside(u[idx], v[idx])
    return masks


@dataclass(frozen=True)
class Shortcut:
    """A spurious correlation switched on in ``shapes``' training split.

    In the training split of :func:`split_indices` ``(n, seed)`` (the split a run trains on),
    each sample's ``factor`` is set, with probability ``strength``, to category
    ``label % categories`` (circle red, square orange, ...); the others keep their independent
    draw. Validation and test stay independent; ``aligned=True`` sets the test split's factor
    too, every time: the test split on which the shortcut holds.

    Attributes:
        factor: a factor of :data:`SHAPE_FACTORS` (``colour``, ``background``, ``texture``...).
        strength: probability that the factor is the label's category, in ``[0, 1]``.
        aligned: also set it in the test split (with probability 1).
    """

    factor: str = "colour"
    strength: float = 0.95
    aligned: bool = False

    @classmethod
    def parse(cls, text: str | None) -> Shortcut | None:
        """``"colour=0.95"`` (as a run records it) -> a shortcut; ``None`` or ``""``: none.

        Raises:
            ValueError: an unknown factor or a strength outside ``[0, 1]``.
        """
        if not text:
            return None
        factor, _, strength = text.partition("=")
        if factor not in {f.name for f in SHAPE_FACTORS}:
            raise ValueError(f"No factor {factor!r} in shapes for a shortcut.")
        shortcut = cls(factor, float(strength or 0.95))
        if not 0 <= shortcut.strength <= 1:
            raise ValueError(f"A shortcut's strength is in [0, 1], not {shortcut.strength}.")
        return shortcut

    def __str__(self) -> str:
        return f"{self.factor}={self.strength:g}"


def _apply_shortcut(
    labels: np.ndarray, factors: dict[str, np.ndarray], shortcut: Shortcut, seed: int
) -> None:
    """Sets ``factors[shortcut.factor]`` in place (see :class:`Shortcut`); own seeded draws."""
    n_values = len(next(f for f in SHAPE_FACTORS if f.name == shortcut.factor).categories)
    splits = split_indices(len(labels), seed)
    rng = np.random.default_rng([seed, 15])  # apart from the image draws, which stay the same
    values = factors[shortcut.factor]
    tied = splits.train[rng.random(len(splits.train)) < shortcut.strength]
    if shortcut.aligned:
        tied = np.concatenate([tied, splits.test])
    values[tied] = labels[tied] % n_values


def make_shapes(
    n: int = 10_000, seed: int = 0, size: int = 32, shortcut: Shortcut | None = None
) -> Dataset:
    """Draws ``n`` RGB images of shapes, deterministically from ``seed``.

    Every factor is drawn independently of the label and of each other, unless a
    :class:`Shortcut` ties one to the label in the training split (all other draws unchanged).

    Returns:
        A :class:`Dataset` with ``images [n, 3, size, size]``, ``labels [n]`` (a shape from
        :data:`SHAPE_CLASSES`) and the factors of :data:`SHAPE_FACTORS`.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(len(SHAPE_CLASSES), size=n)
    factors = {f.name: rng.integers(len(f.categories), size=n) for f in SHAPE_FACTORS}
    if shortcut is not None:
        _apply_shortcut(labels, factors, shortcut, seed)
    jitter = rng.random((n, 4), dtype=np.float32)

    radius = (size * (0.2 + 0.07 * factors["size"] + 0.03 * jitter[:, 0])).astype(np.float32)
    cell = size / 3
    row, col = np.divmod(factors["position"], 3)
    centre_x = np.clip((col + 0.25 + 0.5 * jitter[:, 1]) * cell, radius, size - radius)
    centre_y = np.clip((row + 0.25 + 0.5 * jitter[:, 2]) * cell, radius, size - radius)
    centre_x, centre_y = centre_x.astype(np.float32), centre_y.astype(np.float32)
    angle = ((factors["rotation"] + jitter[:, 3]) * (np.pi / 2)).astype(np.float32)

    grid = np.arange(size, dtype=np.float32) + 0.5
    dx = grid[None, None, :] - centre_x[:, None, None]
    dy = grid[None, :, None] - centre_y[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    scale = 1.0 / radius[:, None, None]
    u = (cos * dx + sin * dy) * scale
    v = (cos * dy - sin * dx) * scale
    mask = _shape_masks(labels, u, v)

    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    patterns = np.stack(
        [
            np.ones_like(xx),
            0.55 + 0.45 * (np.sin((xx + yy) * 1.3) > 0),
            0.55 + 0.45 * ((xx // 3 + yy // 3) % 2),
            0.55 + 0.45 * (np.hypot(xx % 4 - 2, yy % 4 - 2) > 1.2),
        ]
    ).astype(np.float32)
    colours = np.array(list(COLOURS.values()), dtype=np.float32)
    foreground = (
        colours[factors["colour"]][:, :, None, None] * patterns[factors["texture"]][:, None]
    )

    backgrounds = np.empty((n, 3, size, size), dtype=np.float32)
    kind = factors["background"]
    backgrounds[kind == 0] = 0.1
    backgrounds[kind == 1] = 0.8
    noisy = np.flatnonzero(kind == 2)
    backgrounds[noisy] = rng.random((len(noisy), 1, size, size), dtype=np.float32) * 0.6 + 0.2
    backgrounds[kind == 3] = (0.15 + 0.6 * xx / size)[None, None]

    images = backgrounds
    np.copyto(images, foreground, where=mask[:, None])
    info = DatasetInfo(
        name="shapes",
        class_names=SHAPE_CLASSES,
        input_shape=(3, size, size),
        factors=SHAPE_FACTORS,
        source=f"procedurally generated, seed {seed}"
        + (f", shortcut {shortcut} in training" if shortcut else ""),
    )
    return Dataset(info, images, labels.astype(np.int64), factors, masks=mask)


# --- real data ----------------------------------------------------------------------------------


def make_digits(size: int | None = None) -> Dataset:
    """scikit-learn's 1,797 real 8x8 handwritten digits, optionally resized to ``size``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images[:, None] / 16.0).astype(np.float32)
    if size:
        images = resize_images(images, size)
    info = DatasetInfo(
        name="digits",
        class_names=tuple(str(d) for d in range(10)),
        input_shape=tuple(images.shape[1:]),
        source="scikit-learn load_digits (UCI optical digits)",
    )
    return Dataset(info, images, digits.target.astype(np.int64), {})


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (optionally gzipped), the format of MNIST and Fashion-MNIST."""
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _find_idx(folders: list[Path], stem: str) -> Path | None:
    for folder in folders:
        for name in (f"{stem}.gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def make_idx_dataset(
    name: str, class_names: tuple[str, ...], folders: list[Path], source: str
) -> Dataset | None:
    """Train and test IDX files found in ``folders``, concatenated (train first), or ``None``."""
    parts = []
    for split in ("train", "t10k"):
        images = _find_idx(folders, f"{split}-images-idx3-ubyte")
        labels = _find_idx(folders, f"{split}-labels-idx1-ubyte")
        if images is None or labels is None:
            return None
        parts.append((read_idx(images), read_idx(labels)))
    images = np.concatenate([p[0] for p in parts])[:, None].astype(np.float32) / 255.0
    labels = np.concatenate([p[1] for p in parts]).astype(np.int64)
    info = DatasetInfo(name, class_names, tuple(images.shape[1:]), source=source)
    return Dataset(info, images, labels, {})


def data_root(root: str | Path | None = None) -> Path:
    """Where datasets live: ``root``, ``$LAYERSCOPE_DATA``, or ``~/.cache/layerscope``."""
    return Path(root or os.environ.get("LAYERSCOPE_DATA") or Path.home() / ".cache" / "layerscope")


def _torchvision_dataset(name: str, root: Path, download: bool) -> Dataset:
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "cifar10": torchvision.datasets.CIFAR10}[name]
    try:
        parts = [cls(str(root), train=train, download=download) for train in (True, False)]
    except (RuntimeError, OSError) as err:
        raise DatasetUnavailableError(
            f"{name} is not in {root} ({err}). Put torchvision's files there, set "
            "LAYERSCOPE_DATA to a folder that has them, or allow downloading when online."
        ) from err
    data = np.concatenate([np.asarray(p.data) for p in parts])
    labels = np.concatenate([np.asarray(p.targets) for p in parts]).astype(np.int64)
    images = (data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2)).astype(np.float32)
    images /= 255.0
    classes = tuple(str(c).split(" - ")[-1] for c in parts[0].classes)
    info = DatasetInfo(name, classes, tuple(images.shape[1:]), source=f"torchvision, {root}")
    return Dataset(info, images, labels, {})


def load_dataset(
    name: str,
    *,
    n: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
    root: str | Path | None = None,
    download: bool = False,
    shortcut: Shortcut | None = None,
) -> Dataset:
    """Loads a dataset by name.

    Args:
        name: one of :data:`DATASETS`.
        n: keep a stratified sample of this many (shapes: generate this many; default 10,000).
        seed: seed for generation and sampling.
        image_size: resize to ``image_size`` x ``image_size`` (shapes: draw at this size).
        root: folder of downloaded files (default :func:`data_root`).
        download: allow torchvision to download when files are missing.
        shortcut: a spurious correlation in the training split (``shapes`` only).

    Raises:
        DatasetUnavailableError: files missing and not downloadable.
        ValueError: unknown name.
    """
    if name == "shapes":
        return make_shapes(n or 10_000, seed=seed, size=image_size or 32, shortcut=shortcut)
    if shortcut is not None:
        raise ValueError(f"A shortcut needs recorded factors: {name} has none.")
    if name == "digits":
        data = make_digits(image_size)
    elif name == "fashion-mnist":
        base = data_root(root)
        folders = [base, base / "FashionMNIST" / "raw", DEBIAN_FASHION_MNIST]
        data = make_idx_dataset("fashion-mnist", FASHION_MNIST_CLASSES, folders, "Fashion-MNIST")
        if data is None and download:
            import torchvision

            try:
                torchvision.datasets.FashionMNIST(str(base), download=True)
            except (RuntimeError, OSError) as err:
                raise DatasetUnavailableError(f"Downloading Fashion-MNIST failed: {err}") from err
            data = make_idx_dataset("fashion-mnist", FASHION_MNIST_CLASSES, folders, str(base))
        if data is None:
            raise DatasetUnavailableError(
                "Fashion-MNIST is not on this machine. Install Debian's package "
                "(apt-get install dataset-fashion-mnist), put the IDX files in "
                f"{base}, or allow downloading when online."
            )
    elif name in ("mnist", "cifar10"):
        data = _torchvision_dataset(name, data_root(root), download)
    else:
        raise ValueError(f"Unknown dataset {name!r}: use one of {', '.join(DATASETS)}.")
    if image_size and name != "digits":
        data = Dataset(
            DatasetInfo(
                data.info.name,
                data.info.class_names,
                (data.info.input_shape[0], image_size, image_size),
                data.info.factors,
                data.info.source,
            ),
            resize_images(data.images, image_size),
            data.labels,
            data.factors,
        )
    if n is not None and n < len(data):
        data = data.subset(stratified_sample(data.labels, n, seed))
    return data
