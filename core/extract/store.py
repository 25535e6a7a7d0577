"""The activation store on disk: a zarr group of chunked arrays plus a checksummed manifest.

Layout of a store folder (any zarr v3 reader opens it: ``zarr.open_group(path)``)::

    manifest.json          run hash, dataset hash, layers, shapes, N, engine, versions, and a
                           SHA-256 per array per chunk of rows
    ids, labels            [N] int64: sample ids (indices into the source dataset), labels
    logits                 [N, classes] float32
    layer_<i>_pooled       [N, C] float16: channel means over positions (spatial / token layers)
    layer_<i>_full         [N, *shape] float16: the whole output
    topk_<i>_values, _ids  [chunks, C, k]: each chunk's top-k samples per channel (spatial max)

Arrays are chunked along rows by ``chunk_rows``; chunk ``c`` holds rows
``[c * chunk_rows, (c + 1) * chunk_rows)`` of every array (the top-k arrays: row ``c``).
A chunk counts as done only once all its arrays are written and their checksums are in the
manifest (written atomically after the chunk). What can go wrong: a process killed mid-chunk
leaves chunk files without checksums (redone on resume); a chunk file altered on disk fails
its checksum or its decompression, and reading it raises :class:`StoreCorruptError` (never
returns the bytes); a store made for another run, dataset or layer list is refused on resume.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs

from core.files import read_json, write_json

FORMAT = "layerscope-activation-store/1"
MANIFEST = "manifest.json"
KINDS = ("pooled", "full")
"""How a layer is stored: channel means over positions, or the whole output."""


class StoreError(RuntimeError):
    """A folder that is not a store, or a store made for something else."""


class StoreCorruptError(StoreError):
    """A chunk whose bytes do not match the checksum recorded when it was written."""


@dataclass(frozen=True)
class StoredLayer:
    """One stored array of a layer.

    Attributes:
        name: the layer's ``named_modules()`` name.
        kind: ``pooled`` or ``full``.
        array: the zarr array's name.
        shape: one sample's shape in the store (``[C]`` pooled).
        index: the layer's position in the extraction's layer list (its top-k arrays).
    """

    name: str
    kind: str
    array: str
    shape: tuple[int, ...]
    index: int


def checksum(values: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and C-order bytes."""
    values = np.ascontiguousarray(values)
    digest = hashlib.sha256(f"{values.dtype.str}|{values.shape}|".encode())
    digest.update(values.tobytes())
    return digest.hexdigest()


class ActivationStore:
    """A store folder: its manifest and its zarr arrays.

    Create one with :meth:`create`, open one with :meth:`open`. Only one process writes a
    store (the extraction's driver); any number read it.
    """

    def __init__(self, path: Path, manifest: dict[str, Any]):
        import zarr

        self.path = path
        self.manifest = manifest
        self.group = zarr.open_group(str(path), mode="a")

    # --- creating and opening ------------------------------------------------------------

    @classmethod
    def create(
        cls, path: str | Path, manifest: dict[str, Any], arrays: dict[str, tuple[tuple, str]]
    ) -> ActivationStore:
        """A new store, or the existing one at ``path`` when it was made for the same work.

        Args:
            path: the store folder.
            manifest: the identity of the work: ``n``, ``chunk_rows``, ``run_hash``,
                ``dataset_hash``, ``layers`` (list of dicts) and anything else to record.
            arrays: array name -> ``(full shape, dtype)``.

        Raises:
            StoreError: ``path`` holds a store of another run, dataset, layers or chunking.
        """
        import zarr

        path = Path(path)
        identity = ("n", "chunk_rows", "run_hash", "dataset_hash", "layers", "top_k")
        if (path / MANIFEST).is_file():
            old = read_json(path / MANIFEST)
            differs = [k for k in identity if old.get(k) != manifest.get(k)]
            if differs:
                raise StoreError(
                    f"{path} holds a store made for other work (differs in {', '.join(differs)}); "
                    "choose another --out or delete it."
                )
            store = cls(path, old)
            store.manifest.update({k: v for k, v in manifest.items() if k not in identity})
            return store
        if path.exists() and any(path.iterdir()):
            raise StoreError(f"{path} exists and is not an activation store.")
        group = zarr.open_group(str(path), mode="w")
        rows = manifest["chunk_rows"]
        for name, (shape, dtype) in arrays.items():
            chunks = (1, *shape[1:]) if name.startswith("topk_") else (rows, *shape[1:])
            group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0)
        manifest = {"format": FORMAT, **manifest, "checksums": {}, "complete": False}
        write_json(path / MANIFEST, manifest)
        return cls(path, manifest)

    @classmethod
    def open(cls, path: str | Path) -> ActivationStore:
        """Opens an existing store for reading.

        Raises:
            StoreError: no manifest, or not a layerscope store.
        """
        path = Path(path)
        if not (path / MANIFEST).is_file():
            raise StoreError(f"{path} is not an activation store (no {MANIFEST}).")
        manifest = read_json(path / MANIFEST)
        if manifest.get("format") != FORMAT:
            raise StoreError(f"{path}: unknown store format {manifest.get('format')!r}.")
        return cls(path, manifest)

    # --- what is in it -------------------------------------------------------------------

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.manifest["n"])

    @property
    def chunk_rows(self) -> int:
        """Rows per chunk."""
        return int(self.manifest["chunk_rows"])

    @property
    def n_chunks(self) -> int:
        """Number of chunks."""
        return -(-self.n // self.chunk_rows)

    @property
    def layers(self) -> list[StoredLayer]:
        """Every stored layer array, in extraction order."""
        return [
            StoredLayer(d["name"], kind, d["arrays"][kind], tuple(d["shapes"][kind]), i)
            for i, d in enumerate(self.manifest["layers"])
            for kind in d["arrays"]
        ]

    @property
    def class_names(self) -> tuple[str, ...]:
        """One name per label."""
        return tuple(self.manifest.get("class_names", ()))

    def layer(self, name: str, kind: str | None = None) -> StoredLayer:
        """The stored array of layer ``name`` (``kind``: ``pooled`` first when both exist).

        Raises:
            KeyError: not stored.
        """
        found = [s for s in self.layers if s.name == name and kind in (None, s.kind)]
        if not found:
            stored = sorted({f"{s.name} ({s.kind})" for s in self.layers})
            raise KeyError(f"Layer {name!r} ({kind or 'any'}) is not stored: {stored}.")
        return min(found, key=lambda s: KINDS.index(s.kind))

    def rows(self, chunk: int) -> tuple[int, int]:
        """``(start, stop)`` rows of chunk ``chunk``."""
        start = chunk * self.chunk_rows
        return start, min(self.n, start + self.chunk_rows)

    def _region(self, array: str, chunk: int) -> slice:
        if array.startswith("topk_"):
            return slice(chunk, chunk + 1)
        return slice(*self.rows(chunk))

    # --- writing -------------------------------------------------------------------------

    def done_chunks(self) -> set[int]:
        """Chunks whose checksums are recorded (written completely; not re-verified)."""
        return {int(c) for c in self.manifest["checksums"]}

    def write_chunk(self, chunk: int, arrays: dict[str, np.ndarray]) -> None:
        """Writes every array's rows of ``chunk``, then records their checksums atomically."""
        for name, values in arrays.items():
            self.group[name][self._region(name, chunk)] = values
        self.manifest["checksums"][str(chunk)] = {k: checksum(v) for k, v in arrays.items()}
        self.manifest["complete"] = len(self.manifest["checksums"]) == self.n_chunks
        write_json(self.path / MANIFEST, self.manifest)

    def forget(self, chunks: set[int]) -> None:
        """Drops the checksums of ``chunks`` so they count as not done."""
        for chunk in chunks:
            self.manifest["checksums"].pop(str(chunk), None)
        self.manifest["complete"] = len(self.manifest["checksums"]) == self.n_chunks
        write_json(self.path / MANIFEST, self.manifest)

    def update_manifest(self, **fields: Any) -> None:
        """Records ``fields`` in the manifest (atomically)."""
        self.manifest.update(fields)
        write_json(self.path / MANIFEST, self.manifest)

    # --- reading, verified ---------------------------------------------------------------

    def read_chunk(self, array: str, chunk: int) -> np.ndarray:
        """One chunk of ``array``, checked against its recorded checksum.

        Raises:
            StoreCorruptError: the chunk was never completed, cannot be decoded, or its bytes
                differ from what was written.
        """
        expected = self.manifest["checksums"].get(str(chunk), {}).get(array)
        if expected is None:
            raise StoreCorruptError(f"{self.path.name}: chunk {chunk} of {array} is not complete.")
        try:
            values = np.asarray(self.group[array][self._region(array, chunk)])
        except Exception as err:  # a damaged chunk file fails in the codec, whichever it is
            raise StoreCorruptError(
                f"{self.path.name}: chunk {chunk} of {array} cannot be decoded ({err})."
            ) from err
        if checksum(values) != expected:
            raise StoreCorruptError(
                f"{self.path.name}: chunk {chunk} of {array} does not match its checksum."
            )
        return values

    def iter_chunks(self, array: str) -> Iterator[tuple[int, np.ndarray]]:
        """``(start row, values)`` of every chunk of ``array``, each verified."""
        for chunk in range(self.n_chunks):
            yield self.rows(chunk)[0], self.read_chunk(array, chunk)

    def read(self, array: str, rows: np.ndarray | None = None) -> np.ndarray:
        """A whole array (or its ``rows``, sorted or not), every chunk it touches verified."""
        if rows is None:
            return np.concatenate([v for _, v in self.iter_chunks(array)])
        rows = np.asarray(rows, dtype=np.int64)
        first = self.group[array]
        out = np.empty((len(rows), *first.shape[1:]), first.dtype)
        chunk_of = rows // self.chunk_rows
        for chunk in np.unique(chunk_of):
            where = np.flatnonzero(chunk_of == chunk)
            out[where] = self.read_chunk(array, int(chunk))[rows[where] - chunk * self.chunk_rows]
        return out

    def verify(self) -> list[int]:
        """Chunks that are recorded as done but fail decoding or their checksum."""
        bad = []
        for chunk in sorted(self.done_chunks()):
            try:
                for array in self.manifest["checksums"][str(chunk)]:
                    self.read_chunk(array, chunk)
            except StoreCorruptError:
                bad.append(chunk)
        return bad

    def disk_bytes(self, array: str | None = None) -> int:
        """Bytes on disk of one array's folder (or the whole store)."""
        root = self.path / array if array else self.path
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def stores_root() -> Path:
    """Where the app looks for stores: ``$LAYERSCOPE_STORES`` or the per-user data folder."""
    env = os.environ.get("LAYERSCOPE_STORES")
    return Path(env) if env else Path(platformdirs.user_data_dir("layerscope")) / "stores"


def list_stores(root: Path | None = None) -> list[Path]:
    """Store folders directly under ``root`` (default :func:`stores_root`), by name."""
    root = root or stores_root()
    return sorted(p.parent for p in root.glob(f"*/{MANIFEST}")) if root.is_dir() else []
