"""The home page through AppTest: the default run, training from the widgets, bad uploads."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.runs import list_runs


APP = str(Path(__file__).resolve().parent.parent / "app.py")


def app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=180)


def test_default_run_shows_accuracy_and_charts() -> None:
    at = app().run()
    assert not at.exception
    assert at.title[0].value == "cnn-shapes"
    accuracy = next(m for m in at.metric if m.label == "Test accuracy")
    assert float(accuracy.value.rstrip("%")) > 95
    assert at.query_params["run"] == ["cnn-shapes"] or at.query_params["run"] == "cnn-shapes"


def test_unknown_run_in_url_falls_back() -> None:
    at = app()
    at.query_params["run"] = "no-such-run"
    at.query_params["sample"] = "999999"
    at.run()
    assert not at.exception
    assert at.title[0].value == "cnn-shapes"
    assert len(at.toast) >= 1


def test_train_tiny_run_from_widgets(isolated_runs: Path) -> None:
    at = app().run()
    at.selectbox(key="train_dataset").set_value("digits")
    at.selectbox(key="train_arch").set_value("mlp")
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_samples").set_value(300)
    at.text_input(key="train_name").set_value("tiny-mlp")
    at.button[[b.label for b in at.button].index("Train")].click().run()
    assert not at.exception
    deadline = time.time() + 120
    while at.title[0].value != "tiny-mlp" and time.time() < deadline:
        time.sleep(0.5)
        at.run()
        assert not at.exception
    assert at.title[0].value == "tiny-mlp"
    assert at.session_state["run"] == "tiny-mlp"
    assert "tiny-mlp" in [r.name for r in list_runs()]


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _import(at: AppTest, weights: tuple[str, bytes], arch: str = "tv:resnet18", **extra) -> AppTest:
    at.selectbox(key="import_arch").set_value(arch)
    at.file_uploader(key="import_weights").upload(*weights)
    for key, value in extra.items():
        widget = at.file_uploader(key=key) if key == "import_zip" else at.selectbox(key=key)
        widget.upload(*value) if key == "import_zip" else widget.set_value(value)
    at.button[[b.label for b in at.button].index("Import")].click().run()
    return at


def test_bad_weights_upload_shows_error_and_changes_nothing(isolated_runs: Path) -> None:
    from safetensors.torch import save

    from core.models import build_model

    before = sorted(r.name for r in list_runs())
    state = build_model("cnn", (3, 32, 32), 6).state_dict()
    at = _import(app().run(), ("cnn.safetensors", save(state)), arch="tv:resnet18")
    assert not at.exception
    assert any("do not fit" in e.value and "missing keys" in e.value for e in at.error)
    at = _import(app().run(), ("evil.pth", b"\x80\x04cos\nsystem\n(S'true'\ntR."))
    assert any("refused" in e.value or "not a plain weights" in e.value for e in at.error)
    assert sorted(r.name for r in list_runs()) == before


def test_zip_escaping_its_folder_is_refused(isolated_runs: Path, tmp_path: Path) -> None:
    from safetensors.torch import save

    from core.models import build_model

    state = build_model("tv:resnet18", (3, 32, 32), 2).state_dict()
    evil = _zip({"../../escape.png": b"x", "cats/a.png": b"y"})
    at = _import(
        app().run(),
        ("r18.safetensors", save(state)),
        import_dataset="my image folder (zip)",
        import_zip=("evil.zip", evil, "application/zip"),
    )
    assert not at.exception
    assert any("points outside" in e.value for e in at.error)
    assert not list(tmp_path.parent.rglob("escape.png"))
