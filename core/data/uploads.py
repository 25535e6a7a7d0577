"""Files a person brings: weights and zipped image folders, stored safely before use.

An upload is checked for size and kind, then written atomically under the uploads folder
(``<data root>/uploads``); a zip is unpacked there with :func:`core.folder.safe_extract`.
Folders typed as server paths must lie inside :func:`data_roots`. Nothing here overwrites
an existing run or dataset: every stored name is made unique. :func:`import_upload` does a
whole import and leaves nothing behind when it fails: the uploaded weights are never kept, and
an unpacked zip is kept only by the run that uses it.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.data.datasets import data_root
from core.data.folder import (
    FolderReport,
    LoadedFolder,
    TooFewClassesError,
    class_names_from_paths,
    load_image_folder,
    safe_extract,
)
from core.files import write_bytes
from core.models.runs import Normalization, import_run

MAX_UPLOAD_BYTES = 200 * 2**20
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")
DEFAULT_IMPORT_ARCH = "tv:resnet18"
"""The architecture an import offers first: the torchvision model weights most often fit."""
MAX_IMAGE_SIZE = 512
"""The largest input side an import may resize a dataset to (memory on a laptop)."""


IMAGE_ID = re.compile(r"^[0-9a-f]{16}$")
"""An uploaded image's id: the first 16 hex digits of its bytes' SHA-256."""


class UploadError(ValueError):
    """An upload that is too large, of the wrong kind, or not what it claims to be."""


def read_image(data: bytes, filename: str = "This file") -> np.ndarray:
    """Decodes an image file's bytes (PNG, JPEG, ...) as ``[3, H, W]`` float32 in ``[0, 1]``.

    Raises:
        UploadError: the bytes are not an image that can be read (the message names the file).
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            pixels = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        kind = "it is cut short" if isinstance(err, OSError) else "its format is not recognised"
        raise UploadError(f"{filename} is not an image that can be read: {kind}.") from err
    return pixels.transpose(2, 0, 1)


def store_image(filename: str, data: bytes) -> str:
    """Keeps an uploaded image under its content hash, so a link can name it; returns its id.

    The same bytes always get the same id, so storing twice keeps one file.

    Raises:
        UploadError: too large, or not an image that can be read.
    """
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"{filename} is larger than {MAX_UPLOAD_BYTES // 2**20} MB.")
    read_image(data, filename)
    image_id = hashlib.sha256(data).hexdigest()[:16]
    path = uploads_dir() / "images" / image_id
    if not path.is_file():
        write_bytes(path, data)
    return image_id


def load_image(image_id: str) -> np.ndarray:
    """The uploaded image ``image_id`` as ``[3, H, W]`` float32 in ``[0, 1]``.

    Raises:
        UploadError: not an id :func:`store_image` gives, or no such image on this server.
    """
    if not IMAGE_ID.match(image_id):
        raise UploadError(f"“{image_id}” is not an uploaded image's id.")
    path = uploads_dir() / "images" / image_id
    if not path.is_file():
        raise UploadError(f"There is no uploaded image “{image_id}” on this server.")
    return read_image(path.read_bytes(), "The uploaded image")


def uploads_dir() -> Path:
    """Where uploads are kept: ``<data root>/uploads``."""
    return data_root() / "uploads"


def data_roots() -> list[Path]:
    """Folders a typed server path may point into: the data root and ``$LAYERSCOPE_DATA_ROOTS``."""
    extra = os.environ.get("LAYERSCOPE_DATA_ROOTS", "")
    return [data_root(), *(Path(p) for p in extra.split(os.pathsep) if p)]


def _unique(folder: Path, filename: str) -> Path:
    stem, suffix = os.path.splitext(Path(filename).name)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "upload"
    path, i = folder / f"{stem}{suffix}", 2
    while path.exists() or path.with_suffix("").exists():
        path, i = folder / f"{stem}-{i}{suffix}", i + 1
    return path


def store_upload(filename: str, data: bytes, suffixes: tuple[str, ...]) -> Path:
    """Writes an uploaded file under :func:`uploads_dir` after checking its size and suffix.

    Raises:
        UploadError: too large, or a suffix not in ``suffixes``.
    """
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(
            f"{filename} is {len(data) / 2**20:.0f} MiB; the limit is {MAX_UPLOAD_BYTES >> 20} MiB."
        )
    if not filename.lower().endswith(suffixes):
        raise UploadError(f"{filename} is not one of: {', '.join(suffixes)}.")
    return write_bytes(_unique(uploads_dir(), filename), data)


def zip_class_names(filename: str, data: bytes) -> tuple[str, ...]:
    """The classes a zipped image folder will have, in label order, read from its listing.

    Nothing is unpacked: this is for showing the class order before an import. Output ``i``
    of a model is class ``zip_class_names(...)[i]`` (folder names sorted, as torchvision's
    ``ImageFolder``).

    Raises:
        UploadError: not a zip.
        core.folder.TooFewClassesError: fewer than two class folders.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile as err:
        raise UploadError(f"{filename} is not a readable zip file ({err}).") from err
    classes = class_names_from_paths(names)
    if len(classes) == 1:
        raise TooFewClassesError(classes, classes, "zip")
    return classes


def unpack_image_zip(filename: str, data: bytes) -> LoadedFolder:
    """Stores a zipped image folder, unpacks it safely and loads it (32x32 RGB).

    On any failure, nothing stays behind: not the zip, not the unpacked folder.

    Raises:
        UploadError: too large or not a zip.
        core.folder.UnsafeArchiveError: a member escapes the folder, or the zip is a bomb.
        core.folder.EmptyDatasetError: no readable images in class subfolders.
        core.folder.TooFewClassesError: readable images in only one class folder.
    """
    archive = store_upload(filename, data, (".zip",))
    target = archive.with_suffix("")
    try:
        safe_extract(archive, target)
        return load_image_folder(target)
    except zipfile.BadZipFile as err:
        shutil.rmtree(target, ignore_errors=True)
        raise UploadError(f"{filename} is not a readable zip file ({err}).") from err
    except TooFewClassesError as err:
        shutil.rmtree(target, ignore_errors=True)
        raise err.in_container("zip") from None
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        archive.unlink(missing_ok=True)


@dataclass(frozen=True)
class ImportedUpload:
    """A run made from uploaded weights (and images).

    Attributes:
        run: the new run's folder.
        images: the report of loading the uploaded image folder (``None``: one of our datasets).
    """

    run: Path
    images: FolderReport | None = None

    def summary(self) -> str:
        """One line for a person."""
        text = f"Imported **{self.run.name}**."
        return text + (f" Image folder: {self.images.summary()}." if self.images else "")


def import_upload(
    arch: str,
    weights_name: str,
    weights: bytes,
    dataset: str,
    *,
    archive_name: str | None = None,
    archive: bytes | None = None,
    image_size: int | None = None,
    normalization: Normalization | None = None,
    evaluate: str = "test",
    name: str | None = None,
) -> ImportedUpload:
    """Imports uploaded weights, scored on one of our datasets or on an uploaded zip of images.

    The weights file is stored only while it is read. A zip is unpacked under
    :func:`uploads_dir` and kept for the run; if anything fails, it is removed again.

    Args:
        arch: architecture name.
        weights_name: the weights file's name, as uploaded (its suffix says its format).
        weights: its bytes.
        dataset: one of our datasets; ignored when ``archive`` is given.
        archive_name: the zip's name, as uploaded.
        archive: a zipped image folder, one subfolder per class.
        image_size, normalization, evaluate, name: as in :func:`core.runs.import_run`.

    Raises:
        UploadError, ValueError, OSError, RuntimeError: see :func:`unpack_image_zip` and
            :func:`core.runs.import_run`; the message names the file, and nothing is kept.
    """
    loaded = None if archive is None else unpack_image_zip(archive_name or "images.zip", archive)
    folder = None if loaded is None else Path(loaded.dataset.info.source)
    try:
        path = store_upload(weights_name, weights, WEIGHT_SUFFIXES)
        try:
            run = import_run(
                arch,
                path,
                "folder" if folder else dataset,
                image_size=image_size,
                dataset_path=folder,
                name=name,
                normalization=normalization,
                evaluate=evaluate,
                weights_name=weights_name,
            )
        finally:
            path.unlink(missing_ok=True)
    except BaseException:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return ImportedUpload(run, None if loaded is None else loaded.report)
