"""Files a person brings: weights and zipped image folders, stored safely before use.

An upload is checked for size and kind, then written atomically under the uploads folder
(``<data root>/uploads``); a zip is unpacked there with :func:`core.folder.safe_extract`.
Folders typed as server paths must lie inside :func:`data_roots`. Nothing here overwrites
an existing run or dataset: every stored name is made unique.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

from core.data import data_root
from core.folder import LoadedFolder, load_image_folder, safe_extract
from core.io import write_bytes

MAX_UPLOAD_BYTES = 200 * 2**20
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")


class UploadError(ValueError):
    """An upload that is too large, of the wrong kind, or not what it claims to be."""


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


def unpack_image_zip(filename: str, data: bytes) -> LoadedFolder:
    """Stores a zipped image folder, unpacks it safely and loads it (32x32 RGB).

    Raises:
        UploadError: too large or not a zip.
        core.folder.UnsafeArchiveError: a member escapes the folder, or the zip is a bomb.
        core.folder.EmptyDatasetError: no readable images in class subfolders.
    """
    archive = store_upload(filename, data, (".zip",))
    target = archive.with_suffix("")
    try:
        safe_extract(archive, target)
    except zipfile.BadZipFile as err:
        raise UploadError(f"{filename} is not a readable zip file ({err}).") from err
    finally:
        archive.unlink(missing_ok=True)
    return load_image_folder(target)
