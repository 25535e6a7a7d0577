"""Bad input, through the UI (AppTest) and the library: a clear message, and nothing lost.

Library-level cases for folders, zips and weights live beside their modules
(test_folder.py, test_models.py, test_train_runs.py); this file drives the same cases through
the home page's upload forms and checks that the runs that existed are all still there.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save
from streamlit.testing.v1 import AppTest

from core.activations import capture
from core.models.evaluation import predict
from core.models.runs import list_runs
from core.models.train import TrainConfig, train
from core.models.zoo import build_model

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=180).run()


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 12), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def resnet_weights(classes: int = 2) -> bytes:
    return save(build_model("tv:resnet18", (3, 32, 32), classes).state_dict())


def submit_import(
    at: AppTest, weights: tuple[str, bytes], arch: str = "tv:resnet18", archive: bytes | None = None
) -> AppTest:
    at.selectbox(key="import_arch").set_value(arch)
    at.file_uploader(key="import_weights").upload(*weights)
    if archive is not None:
        at.selectbox(key="import_dataset").set_value("my image folder (zip)")
        at.file_uploader(key="import_zip").upload("images.zip", archive, "application/zip")
    at.button(key="import_submit").click().run()
    assert not at.exception
    return at


def errors(at: AppTest) -> str:
    return " ".join(e.value for e in at.error)


@pytest.fixture
def runs_before(isolated_runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("LAYERSCOPE_DATA", str(tmp_path / "data"))
    return sorted(r.name for r in list_runs())


def assert_nothing_changed(before: list[str]) -> None:
    assert sorted(r.name for r in list_runs()) == before


def test_weights_for_another_architecture(runs_before: list[str]) -> None:
    weights = save(build_model("cnn", (3, 32, 32), 6).state_dict())
    at = submit_import(app(), ("cnn.safetensors", weights), arch="tv:resnet18")
    assert "do not fit" in errors(at) and "missing keys" in errors(at)
    assert_nothing_changed(runs_before)


def test_pickle_that_would_run_code(runs_before: list[str]) -> None:
    evil = b"\x80\x04cposix\nsystem\n(S'touch /tmp/layerscope-pwned'\ntR."
    at = submit_import(app(), ("evil.pth", evil))
    assert "refused" in errors(at)
    assert not Path("/tmp/layerscope-pwned").exists()
    assert_nothing_changed(runs_before)


def test_upload_over_the_limit(runs_before: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.data.uploads.MAX_UPLOAD_BYTES", 1024)
    at = submit_import(app(), ("big.safetensors", resnet_weights()))
    assert "the limit is" in errors(at)
    assert_nothing_changed(runs_before)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"../../escape.png": b"x", "cats/a.png": b"y"}, "points outside"),
        ({"cats/zeros.png": bytes(8 * 2**20)}, "more than"),
        ({"cats/readme.txt": b"no images here"}, "No readable images"),
    ],
    ids=["traversal", "bomb", "empty"],
)
def test_bad_zips(
    runs_before: list[str], monkeypatch: pytest.MonkeyPatch, files: dict, message: str
) -> None:
    monkeypatch.setattr("core.data.folder.MAX_UNPACKED_BYTES", 2**20)
    at = submit_import(app(), ("r18.safetensors", resnet_weights()), archive=zipped(files))
    assert message in errors(at)
    assert_nothing_changed(runs_before)


def test_corrupt_images_are_counted_not_fatal(runs_before: list[str]) -> None:
    files = {
        f"imgs/{c}/{i}.png": png(rgb)
        for c, rgb in (("red", (255, 0, 0)), ("blue", (0, 0, 255)))
        for i in range(3)
    }
    files["imgs/red/truncated.png"] = png((9, 9, 9))[:30]
    files["imgs/blue/notes.txt"] = b"hello"
    at = submit_import(app(), ("r18.safetensors", resnet_weights(2)), archive=zipped(files))
    assert not errors(at), errors(at)
    assert any("2 files skipped" in s.value for s in at.success)
    assert len(list_runs()) == len(runs_before) + 1
    assert at.title[0].value.startswith("resnet18-folder-images")


def test_half_written_run_is_reported_in_the_sidebar(isolated_runs: Path) -> None:
    path = train(TrainConfig(model="mlp", dataset="digits", n_samples=200, epochs=1), name="half")
    (path / "metrics.json").write_text("[{")
    at = app()
    assert not at.exception
    assert at.title[0].value == "cnn-shapes"
    assert "could not be read" in " ".join(e.label for e in at.sidebar.expander)


def test_run_with_missing_weights_says_so(isolated_runs: Path) -> None:
    path = train(TrainConfig(model="mlp", dataset="digits", n_samples=200, epochs=1), name="gone")
    (path / "model.safetensors").unlink()
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["run"] = "gone"
    at.run()
    assert not at.exception
    assert "model.safetensors is missing" in errors(at)


def test_nan_and_inf_inputs_flow_through() -> None:
    model = build_model("cnn", (3, 32, 32), 6)
    images = np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32)
    images[0, :, 0, 0] = np.nan
    images[1, :, 5, 5] = np.inf
    got = capture(model, torch.from_numpy(images), ["block1.conv1"])
    assert np.isnan(got.arrays["block1.conv1"][0]).any()
    assert np.isfinite(got.arrays["block1.conv1"][2:]).all()
    scored = predict(model, images, np.zeros(4, dtype=np.int64))
    assert scored.probs.shape == (4, 6) and np.isfinite(scored.probs[2:]).all()


def test_nan_weights_run_renders_home(isolated_runs: Path, tmp_path: Path) -> None:
    from core.models.runs import import_run

    state = build_model("mlp", (1, 8, 8), 10).state_dict()
    state["fc1.weight"][:] = float("nan")
    (tmp_path / "nan.safetensors").write_bytes(save(state))
    name = import_run("mlp", tmp_path / "nan.safetensors", "digits").name
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["run"] = name
    at.run()
    assert not at.exception
    meta = json.loads((isolated_runs / name / "run.json").read_text())
    assert meta["status"] == "imported"


def test_one_class_zip_is_refused_for_the_right_reason(
    runs_before: list[str], tmp_path: Path
) -> None:
    files = {f"imgs/cats/{i}.png": png((200, 10 * i, 0)) for i in range(4)}
    at = submit_import(app(), ("r18.safetensors", resnet_weights(1)), archive=zipped(files))
    plain = "The zip has only one class folder (cats); an image classifier needs at least two."
    assert plain in errors(at) and "Nothing was imported" in errors(at)
    assert "weights do not fit" not in errors(at)
    assert_nothing_changed(runs_before)
    assert not [p for p in (tmp_path / "data" / "uploads").iterdir()]


def test_failed_import_leaves_no_folder_and_class_order_shows(
    runs_before: list[str], tmp_path: Path
) -> None:
    files = {f"imgs/{c}/{i}.png": png((9 * i, 0, 200)) for c in ("b", "a") for i in range(3)}
    at = app()
    at.selectbox(key="import_dataset").set_value("my image folder (zip)")
    at.file_uploader(key="import_zip").upload("images.zip", zipped(files), "application/zip")
    at.button(key="import_check").click().run()
    shown = [d.value for d in at.dataframe if list(d.value.columns) == ["output", "class"]]
    assert shown and shown[0]["class"].tolist() == ["a", "b"]  # before any import
    assert_nothing_changed(runs_before)
    at = submit_import(at, ("r18.safetensors", resnet_weights(3)), archive=zipped(files))
    assert "keys of the wrong shape" in errors(at)
    assert_nothing_changed(runs_before)
    assert not list((tmp_path / "data" / "uploads").iterdir())
    at.file_uploader(key="import_weights").upload("r18.safetensors", resnet_weights(2))
    at.radio(key="import_evaluate").set_value("all")
    at.selectbox(key="import_norm").set_value("imagenet")
    at.button(key="import_submit").click().run()
    assert not errors(at), errors(at)
    assert [p.name for p in (tmp_path / "data" / "uploads").iterdir()] == ["images"]  # no "-2"
    details = " ".join(m.value for m in at.markdown)
    assert "r18.safetensors" in details and "0.485" in details and "all the images" in details
    assert any("all 6 images" in c.value for c in at.caption)


def test_an_uploaded_image_is_kept_by_its_hash_and_refused_when_corrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.data.uploads import UploadError, load_image, read_image, store_image

    monkeypatch.setenv("LAYERSCOPE_DATA", str(tmp_path))
    buffer = io.BytesIO()
    Image.new("RGB", (5, 4), (255, 0, 0)).save(buffer, "PNG")
    image_id = store_image("red.png", buffer.getvalue())
    assert image_id == store_image("again.png", buffer.getvalue())
    pixels = load_image(image_id)
    assert pixels.shape == (3, 4, 5) and pixels[0].min() == 1.0 and pixels[1].max() == 0.0
    with pytest.raises(UploadError, match=r"^cat\.png is not an image that can be read"):
        read_image(b"not a png", "cat.png")
    with pytest.raises(UploadError, match="cut short"):
        store_image("half.png", buffer.getvalue()[:40])
    with pytest.raises(UploadError, match="not an uploaded image's id"):
        load_image("../../etc/passwd")
    with pytest.raises(UploadError, match="no uploaded image"):
        load_image("0" * 16)
