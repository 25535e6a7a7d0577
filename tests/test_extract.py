"""Activation stores: contents, resume after interruption, corrupt chunks, top-k map + reduce,
and the ray engine's store equal to the local one's bit for bit."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import zarr

from core.activations import capture
from core.data.datasets import make_shapes
from core.extract.extract import extract
from core.extract.store import ActivationStore, StoreCorruptError, StoreError
from core.extract.topk import merge_top_k, shard_top_k, store_top_k
from core.models.runs import load_run

RUN, LAYERS = "cnn-shapes", ["block2", "head.flatten"]
N, ROWS = 300, 128  # three chunks: 128, 128, 44


@pytest.fixture(scope="module")
def data():
    return make_shapes(N, seed=3)


def _extract(out: Path, data, **kwargs) -> ActivationStore:
    return extract(
        RUN, LAYERS, out, dataset=data, chunk_rows=ROWS, batch_size=50, top_k=5,
        device="cpu", progress=lambda *_: None, **kwargs,
    )  # fmt: skip


def _arrays(store: ActivationStore) -> dict[str, np.ndarray]:
    names = store.manifest["checksums"]["0"]
    return {name: store.read(name) for name in names}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data) -> ActivationStore:
    return _extract(tmp_path_factory.mktemp("ref") / "store", data, spatial="both")


def test_store_holds_what_capture_gives_as_float16_with_a_manifest(reference, data):
    run = load_run(RUN, device="cpu")
    cap = capture(run.model, data.images[:20], LAYERS)
    full = reference.read("layer_0_full", np.arange(20))
    assert full.dtype == np.float16 and full.shape == (20, 32, 8, 8)
    np.testing.assert_array_equal(full, cap.arrays["block2"].astype(np.float16))
    pooled = reference.read(reference.layer("block2", "pooled").array, np.arange(20))
    np.testing.assert_array_equal(pooled, cap.arrays["block2"].mean((2, 3)).astype(np.float16))
    assert reference.layer("head.flatten").kind == "full"  # flat layers are stored once
    np.testing.assert_array_equal(reference.read("ids"), np.arange(N))
    np.testing.assert_array_equal(reference.read("labels"), data.labels)
    np.testing.assert_allclose(reference.read("logits")[:20], cap.logits, rtol=1e-5, atol=1e-5)
    m = reference.manifest
    assert m["n"] == N and m["complete"] and len(m["checksums"]) == 3
    assert m["run_hash"] and m["dataset_hash"] and m["versions"]["zarr"] == zarr.__version__
    group = zarr.open_group(str(reference.path), mode="r")  # any zarr reader opens it
    assert group["layer_0_full"].chunks == (ROWS, 32, 8, 8)


def _interrupt(*_args: int) -> None:
    raise KeyboardInterrupt  # as Ctrl-C right after the first chunk is written


def test_interrupted_extraction_resumes_computing_only_the_missing_chunks(
    tmp_path, data, reference
):
    out = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        extract(
            RUN, LAYERS, out, dataset=data, chunk_rows=ROWS, batch_size=50, top_k=5,
            device="cpu", spatial="both", progress=_interrupt,
        )  # fmt: skip
    assert ActivationStore.open(out).done_chunks() == {0}
    computed: list[int] = []
    store = extract(
        RUN, LAYERS, out, dataset=data, chunk_rows=ROWS, batch_size=50, top_k=5, device="cpu",
        spatial="both", progress=lambda done, total, images: computed.append(images),
    )  # fmt: skip
    assert computed == [128, 172]  # chunks 1 and 2 only
    assert store.manifest["checksums"] == reference.manifest["checksums"]
    for name, values in _arrays(reference).items():
        np.testing.assert_array_equal(store.read(name), values)


def _chunk_file(store: ActivationStore, array: str, chunk: int) -> Path:
    files = sorted((store.path / array / "c" / str(chunk)).rglob("*"))
    return next(f for f in files if f.is_file())


def test_a_corrupt_chunk_is_detected_never_read_and_redone(tmp_path, data, reference):
    out = tmp_path / "store"
    store = _extract(out, data, spatial="both")
    victim = _chunk_file(store, "layer_0_full", 1)
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte in the middle of the compressed chunk
    victim.write_bytes(bytes(raw))
    store = ActivationStore.open(out)
    assert store.verify() == [1]
    with pytest.raises(StoreCorruptError):
        store.read("layer_0_full")
    store.read_chunk("layer_0_full", 0)  # the other chunks still read
    computed: list[int] = []
    store = extract(
        RUN, LAYERS, out, dataset=data, chunk_rows=ROWS, batch_size=50, top_k=5, device="cpu",
        spatial="both", progress=lambda done, total, images: computed.append(images),
    )  # fmt: skip
    assert computed == [128] and store.verify() == []
    np.testing.assert_array_equal(store.read("layer_0_full"), reference.read("layer_0_full"))


def test_a_half_written_chunk_is_not_done_and_is_redone(tmp_path, data, reference):
    out = tmp_path / "store"
    store = _extract(out, data, spatial="both")
    store.forget({2})  # as if killed after writing the chunk's arrays, before its checksums
    store.group["logits"][256:300] = 7.0  # and the arrays hold something else
    with pytest.raises(StoreCorruptError, match="not complete"):
        ActivationStore.open(out).read("logits")
    store = _extract(out, data, spatial="both")
    np.testing.assert_array_equal(store.read("logits"), reference.read("logits"))


def test_a_store_for_other_work_is_refused(tmp_path, data, reference):
    with pytest.raises(StoreError, match="layers"):
        extract(RUN, ["block3"], reference.path, dataset=data, chunk_rows=ROWS, device="cpu")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    with pytest.raises(StoreError, match="not an activation store"):
        _extract(tmp_path / "other", data)


def test_merged_shard_top_k_equals_a_global_top_k():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 20, size=(1000, 7)).astype(np.float32)  # many ties
    scores[5, 3] = np.nan
    ids = np.arange(1000) + 10_000
    shards = [shard_top_k(scores[a : a + 97], ids[a : a + 97], 9) for a in range(0, 1000, 97)]
    values, top = merge_top_k(np.stack([s[0] for s in shards]), np.stack([s[1] for s in shards]))
    for c in range(7):  # global: higher score first, then lower id; NaN last
        key = np.nan_to_num(scores[:, c], nan=-np.inf)
        order = np.argsort(-key, kind="stable")[:9]
        np.testing.assert_array_equal(top[c], ids[order])
        np.testing.assert_array_equal(values[c], scores[order, c])


def test_store_top_k_equals_the_top_k_of_every_sample(reference, data):
    run = load_run(RUN, device="cpu")
    peaks = capture(run.model, data.images, ["block2"]).arrays["block2"].max(axis=(2, 3))
    values, ids = store_top_k(reference, "block2")
    for c in range(peaks.shape[1]):
        order = np.argsort(-peaks[:, c], kind="stable")[:5]
        np.testing.assert_array_equal(ids[c], order)
        np.testing.assert_allclose(values[c], peaks[order, c], rtol=1e-6)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed")
def test_ray_engine_store_equals_the_local_engine_bit_for_bit(tmp_path, data, reference):
    store = _extract(tmp_path / "ray", data, spatial="both", engine="ray", workers=2)
    assert store.manifest["engine"] == "ray" and "ray" in store.manifest["versions"]
    assert store.manifest["checksums"] == reference.manifest["checksums"]
    for name, values in _arrays(reference).items():
        np.testing.assert_array_equal(store.read(name), values)
