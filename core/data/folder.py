"""A user's own images: a folder with one subfolder per class, or a zip of one.

Unreadable or corrupt files are skipped and counted in a :class:`FolderReport`, never a crash.
A zip is unpacked only under its target folder: members with absolute paths, ``..`` parts or
links are refused, and the unpacked size and file count are bounded (a zip bomb stops at the
bound with :class:`UnsafeArchiveError`). Paths typed by a person are checked against the data
roots with :func:`check_inside`. Classes are the subfolders sorted by name (torchvision's
``ImageFolder`` order; :func:`class_names_from_paths` tells it from a zip's listing before
unpacking), and a folder with images in fewer than two of them is refused with
:class:`TooFewClassesError`: an image classifier needs at least two classes.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.data.datasets import Dataset, DatasetInfo

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_UNPACKED_BYTES = 512 * 2**20
MAX_FILES = 100_000
CLASS_ORDER_RULE = (
    "Output i of the model must be class i: the class folders sorted by name, the order "
    "torchvision's ImageFolder uses."
)


class UnsafeArchiveError(ValueError):
    """A zip that would write outside its folder, or unpack beyond the bounds."""


class EmptyDatasetError(ValueError):
    """A folder with no readable images in class subfolders."""


class TooFewClassesError(EmptyDatasetError):
    """Readable images in fewer than two class subfolders: nothing for a classifier to tell apart.

    Attributes:
        classes: the class folders that hold readable images.
        folders: every class folder found (some may hold no readable image).
        container: what a person uploaded or typed: ``folder`` or ``zip``.
    """

    def __init__(
        self, classes: tuple[str, ...], folders: tuple[str, ...], container: str = "folder"
    ):
        self.classes, self.folders, self.container = classes, folders, container
        which = "class folder" if len(folders) == len(classes) else "class folder with images"
        super().__init__(
            f"The {container} has only one {which} ({', '.join(classes)}); "
            "an image classifier needs at least two."
        )

    def in_container(self, container: str) -> TooFewClassesError:
        """The same error, naming ``container`` (e.g. ``zip``) as what was brought."""
        return TooFewClassesError(self.classes, self.folders, container)


@dataclass(frozen=True)
class FolderReport:
    """What loading a folder found.

    Attributes:
        loaded: images read.
        skipped: ``(relative path, reason)`` for every file that was not an image or was corrupt.
        classes: class names, from the subfolder names, sorted.
    """

    loaded: int
    skipped: tuple[tuple[str, str], ...]
    classes: tuple[str, ...]

    def summary(self) -> str:
        """One line for a person."""
        text = f"{self.loaded} images in {len(self.classes)} classes"
        return text + (f"; {len(self.skipped)} files skipped (unreadable)" if self.skipped else "")


@dataclass(frozen=True)
class LoadedFolder:
    """A folder dataset and the report of loading it."""

    dataset: Dataset
    report: FolderReport


def check_inside(path: str | Path, roots: list[Path]) -> Path:
    """``path`` resolved, if it lies under one of ``roots``.

    Raises:
        PermissionError: it lies outside every root (after resolving links and ``..``).
    """
    resolved = Path(path).expanduser().resolve()
    if not any(resolved.is_relative_to(r.expanduser().resolve()) for r in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise PermissionError(f"{path} is outside the data folders ({allowed}).")
    return resolved


def safe_extract(
    archive: str | Path,
    target: str | Path,
    max_bytes: int | None = None,
    max_files: int | None = None,
) -> Path:
    """Unpacks a zip into ``target``, refusing anything that could escape or explode.

    Raises:
        UnsafeArchiveError: an absolute or ``..`` path, a link, too many files, or more than
            ``max_bytes`` unpacked (default :data:`MAX_UNPACKED_BYTES`; counted as bytes are
            written, not only as the zip claims).
        zipfile.BadZipFile: not a zip.
    """
    target = Path(target)
    max_bytes = MAX_UNPACKED_BYTES if max_bytes is None else max_bytes
    max_files = MAX_FILES if max_files is None else max_files
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > max_files:
            raise UnsafeArchiveError(f"The zip holds {len(members)} files (limit {max_files}).")
        for member in members:
            parts = PurePosixPath(member.filename.replace("\\", "/")).parts
            if member.filename.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
                raise UnsafeArchiveError(f"The zip member {member.filename!r} points outside.")
            if stat.S_ISLNK(member.external_attr >> 16):
                raise UnsafeArchiveError(f"The zip member {member.filename!r} is a link.")
        if sum(m.file_size for m in members) > max_bytes:
            raise UnsafeArchiveError(f"The zip unpacks to more than {max_bytes >> 20} MiB.")
        target.mkdir(parents=True, exist_ok=True)
        written = 0
        try:
            for member in members:
                dest = target.joinpath(*PurePosixPath(member.filename.replace("\\", "/")).parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(dest, "wb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > max_bytes:
                            raise UnsafeArchiveError(
                                f"The zip unpacks to more than {max_bytes >> 20} MiB."
                            )
                        out.write(chunk)
        except UnsafeArchiveError:
            shutil.rmtree(target, ignore_errors=True)
            raise
    return target


def _hidden(name: str) -> bool:
    """Names a person did not mean as content: dotfiles and macOS's ``__MACOSX`` folder."""
    return name.startswith((".", "__MACOSX"))


def _class_root(folder: Path) -> Path:
    """The folder whose subfolders are classes (descends through a single wrapping folder)."""
    entries = [p for p in folder.iterdir() if not _hidden(p.name)]
    if len(entries) == 1 and entries[0].is_dir() and any(p.is_dir() for p in entries[0].iterdir()):
        return entries[0]
    return folder


def class_folders(folder: str | Path) -> tuple[str, ...]:
    """The class names of an image folder, in label order: subfolder names, sorted.

    This is the order torchvision's ``ImageFolder`` uses: output ``i`` of a model is class
    ``class_folders(folder)[i]``.
    """
    root = _class_root(Path(folder))
    return tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not _hidden(p.name)))


def _member_parts(name: str) -> tuple[str, ...]:
    """A zip member's path parts; a directory entry (``a/b/``) gets a trailing ``""`` part."""
    name = name.replace("\\", "/")
    parts = PurePosixPath(name).parts
    return (*parts, "") if name.endswith("/") else parts


def class_names_from_paths(paths: list[str]) -> tuple[str, ...]:
    """The class names :func:`load_image_folder` would find, from a zip's member paths alone.

    Same rules as on disk: hidden entries are ignored, a single wrapping folder is descended
    into, and every folder at the class level is a class, sorted by name.
    """
    parts = [_member_parts(p) for p in paths]
    parts = [p for p in parts if p and not _hidden(p[0])]
    top = {p[0] for p in parts}
    if len(top) == 1 and any(len(p) > 2 for p in parts):  # one wrapping folder with subfolders
        parts = [p[1:] for p in parts]
    return tuple(sorted({p[0] for p in parts if len(p) > 1 and not _hidden(p[0])}))


def load_image_folder(
    folder: str | Path, image_size: int = 32, channels: int = 3, max_images: int = 50_000
) -> LoadedFolder:
    """Reads ``folder/<class>/<image>`` into a dataset of ``[N, channels, S, S]`` images.

    Labels follow :func:`class_folders`: subfolder names sorted, as torchvision's ``ImageFolder``.

    Raises:
        EmptyDatasetError: no class subfolder holds a readable image.
        TooFewClassesError: readable images in only one class subfolder.
        FileNotFoundError: the folder does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"No folder {folder}.")
    root = _class_root(folder)
    classes = class_folders(folder)
    images, labels, skipped = [], [], []
    mode = "RGB" if channels == 3 else "L"
    for label, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if not path.is_file() or len(images) >= max_images:
                continue
            rel = str(path.relative_to(root))
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append((rel, "not an image file"))
                continue
            try:
                with Image.open(path) as img:
                    img = img.convert(mode).resize((image_size, image_size), Image.BILINEAR)
                    pixels = np.asarray(img, dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
                skipped.append((rel, f"unreadable: {type(err).__name__}"))
                continue
            images.append(pixels.reshape(image_size, image_size, channels).transpose(2, 0, 1))
            labels.append(label)
    report = FolderReport(len(images), tuple(skipped), tuple(classes))
    if not images:
        raise EmptyDatasetError(
            f"No readable images in class subfolders of {folder.name} ({report.summary()})."
        )
    filled = tuple(classes[i] for i in sorted(set(labels)))
    if len(filled) < 2:
        raise TooFewClassesError(filled, classes)
    info = DatasetInfo(
        name=f"folder:{folder.name}",
        class_names=tuple(classes),
        input_shape=(channels, image_size, image_size),
        source=str(folder),
    )
    data = Dataset(info, np.stack(images), np.asarray(labels, dtype=np.int64), {})
    return LoadedFolder(data, report)
