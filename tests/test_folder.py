"""A user's image folder and zip: corrupt files skipped and counted, unsafe zips refused."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.folder import (
    EmptyDatasetError,
    TooFewClassesError,
    UnsafeArchiveError,
    check_inside,
    class_names_from_paths,
    load_image_folder,
    safe_extract,
)
from core.data.uploads import (
    MAX_UPLOAD_BYTES,
    UploadError,
    import_upload,
    store_upload,
    unpack_image_zip,
    zip_class_names,
)


def png(colour: tuple[int, int, int], size: int = 10) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def make_folder(root: Path) -> Path:
    for name, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        (root / name).mkdir(parents=True)
        for i in range(3):
            (root / name / f"{i}.png").write_bytes(png(colour))
    (root / "cats" / "broken.png").write_bytes(png((1, 2, 3))[:40])  # truncated
    (root / "dogs" / "notes.txt").write_text("not an image")
    return root


def test_folder_loads_and_reports_skips(tmp_path: Path) -> None:
    loaded = load_image_folder(make_folder(tmp_path / "pets"), image_size=8)
    assert loaded.dataset.images.shape == (6, 3, 8, 8)
    assert loaded.dataset.info.class_names == ("cats", "dogs")
    assert loaded.dataset.labels.tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_allclose(loaded.dataset.images[0, 0], 1.0)
    reasons = dict(loaded.report.skipped)
    assert reasons["cats/broken.png"].startswith("unreadable")
    assert reasons["dogs/notes.txt"] == "not an image file"
    assert "2 files skipped" in loaded.report.summary()


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    with pytest.raises(EmptyDatasetError, match="No readable images"):
        load_image_folder(tmp_path / "empty")


def zipped(files: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "files",
    [{"../evil.png": b"x"}, {"/abs/evil.png": b"x"}, {"a/../../evil.png": b"x"}],
)
def test_zip_cannot_escape(tmp_path: Path, files: dict[str, bytes]) -> None:
    (tmp_path / "z.zip").write_bytes(zipped(files))
    with pytest.raises(UnsafeArchiveError, match="points outside"):
        safe_extract(tmp_path / "z.zip", tmp_path / "out")
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "out").exists()


def test_zip_links_refused(tmp_path: Path) -> None:
    (tmp_path / "z.zip").write_bytes(zipped({}, links=("cats/link.png",)))
    with pytest.raises(UnsafeArchiveError, match="link"):
        safe_extract(tmp_path / "z.zip", tmp_path / "out")


def test_zip_bomb_stops_at_the_bound(tmp_path: Path) -> None:
    (tmp_path / "bomb.zip").write_bytes(zipped({"cats/zeros.png": bytes(8 * 2**20)}))
    assert (tmp_path / "bomb.zip").stat().st_size < 100_000
    with pytest.raises(UnsafeArchiveError, match="more than"):
        safe_extract(tmp_path / "bomb.zip", tmp_path / "out", max_bytes=2**20)
    assert not (tmp_path / "out").exists()


def test_zip_bomb_that_lies_about_its_size(tmp_path: Path) -> None:
    data = bytearray(zipped({"cats/zeros.png": bytes(4 * 2**20)}))
    # Patch the declared uncompressed size (local header and central directory) down to 10 bytes.
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature)
        data[at + offset : at + offset + 4] = (10).to_bytes(4, "little")
    (tmp_path / "liar.zip").write_bytes(bytes(data))
    with pytest.raises((UnsafeArchiveError, zipfile.BadZipFile)):
        safe_extract(tmp_path / "liar.zip", tmp_path / "out", max_bytes=2**20)


def test_unpack_uploaded_zip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYERSCOPE_DATA", str(tmp_path))
    archive = zipped({"pets/cats/a.png": png((255, 0, 0)), "pets/dogs/b.png": png((0, 0, 255))})
    loaded = unpack_image_zip("pets.zip", archive)
    assert loaded.dataset.info.class_names == ("cats", "dogs")
    assert not list((tmp_path / "uploads").glob("*.zip"))  # the archive itself is not kept
    with pytest.raises(UploadError, match="not a readable zip"):
        unpack_image_zip("fake.zip", b"not a zip")


def test_upload_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYERSCOPE_DATA", str(tmp_path))
    monkeypatch.setattr("core.data.uploads.MAX_UPLOAD_BYTES", 1000)
    with pytest.raises(UploadError, match="limit"):
        store_upload("big.safetensors", bytes(2000), (".safetensors",))
    with pytest.raises(UploadError, match="not one of"):
        store_upload("weights.exe", b"x", (".safetensors",))
    first = store_upload("w.safetensors", b"1", (".safetensors",))
    second = store_upload("w.safetensors", b"2", (".safetensors",))
    assert first != second and first.read_bytes() == b"1"
    assert MAX_UPLOAD_BYTES == 200 * 2**20


def test_paths_outside_data_roots(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "ok").mkdir(parents=True)
    assert check_inside(root / "ok", [root]) == (root / "ok").resolve()
    with pytest.raises(PermissionError, match="outside"):
        check_inside(root / ".." / "elsewhere", [root])
    (root / "link").symlink_to("/etc")
    with pytest.raises(PermissionError):
        check_inside(root / "link", [root])


ONE_CLASS = "The zip has only one class folder (cats); an image classifier needs at least two."


def test_one_class_folder_is_refused_plainly(tmp_path: Path) -> None:
    (tmp_path / "one" / "cats").mkdir(parents=True)
    (tmp_path / "one" / "cats" / "a.png").write_bytes(png((255, 0, 0)))
    with pytest.raises(TooFewClassesError) as err:
        load_image_folder(tmp_path / "one")
    assert str(err.value) == ONE_CLASS.replace("zip", "folder")
    (tmp_path / "one" / "dogs").mkdir()
    (tmp_path / "one" / "dogs" / "notes.txt").write_text("no image")
    with pytest.raises(TooFewClassesError, match="only one class folder with images"):
        load_image_folder(tmp_path / "one")


def test_one_class_zip_is_refused_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAYERSCOPE_DATA", str(tmp_path))
    archive = zipped({"pets/cats/a.png": png((255, 0, 0)), "pets/cats/b.png": png((0, 0, 9))})
    with pytest.raises(TooFewClassesError) as err:
        zip_class_names("pets.zip", archive)
    assert str(err.value) == ONE_CLASS
    with pytest.raises(TooFewClassesError) as err:
        unpack_image_zip("pets.zip", archive)
    assert str(err.value) == ONE_CLASS
    assert not list((tmp_path / "uploads").iterdir())


def test_class_order_from_the_zip_listing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYERSCOPE_DATA", str(tmp_path))
    files = {
        "set/zebra/a.png": png((1, 1, 1)),
        "set/Apple/b.png": png((2, 2, 2)),
        "set/mango/c.png": png((3, 3, 3)),
        "__MACOSX/set/zebra/._a.png": b"apple double",
        ".DS_Store": b"x",
    }
    classes = zip_class_names("set.zip", zipped(files))
    assert classes == ("Apple", "mango", "zebra")  # sorted by name, as ImageFolder
    assert unpack_image_zip("set.zip", zipped(files)).dataset.info.class_names == classes
    flat = {"cats/": b"", "cats/a.png": png((1, 1, 1)), "dogs/b.png": png((2, 2, 2))}
    assert class_names_from_paths(list(flat)) == ("cats", "dogs")
    assert class_names_from_paths(["a/cats/", "a/dogs/x.png"]) == ("cats", "dogs")
    with pytest.raises(UploadError, match=r"notes\.zip is not a readable zip"):
        zip_class_names("notes.zip", b"plain text")


def test_failed_import_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import save

    from core.models.zoo import WeightsMismatchError, build_model

    monkeypatch.setenv("LAYERSCOPE_DATA", str(tmp_path))
    archive = zipped({f"pets/{c}/{i}.png": png((40 * i, 0, 0)) for c in "ab" for i in range(3)})
    wrong = save(build_model("cnn", (3, 32, 32), 2).state_dict())
    with pytest.raises(WeightsMismatchError):
        import_upload(
            "mlp", "w.safetensors", wrong, "folder", archive_name="pets.zip", archive=archive
        )
    assert not list((tmp_path / "uploads").iterdir())
    done = import_upload(
        "cnn", "w.safetensors", wrong, "folder", archive_name="pets.zip", archive=archive
    )
    assert [p.name for p in (tmp_path / "uploads").iterdir()] == ["pets"]  # no "-2": nothing left
    assert done.images is not None and "6 images in 2 classes" in done.summary()
    from core.models.runs import delete_run, read_run

    assert read_run(done.run).config["dataset_path"] == str(tmp_path / "uploads" / "pets")
    delete_run(done.run.name)
    assert not (tmp_path / "uploads" / "pets").exists()  # the run's images go with it
