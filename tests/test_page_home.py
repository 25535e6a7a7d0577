"""The home page through AppTest: the default run, the way in, training from the widgets
(progress, a disabled Train button, stop), deleting with a confirmation, a model at chance."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest

from core.jobs import queue
from core.models.runs import import_run, list_runs, read_run
from core.models.train import TrainConfig, train
from core.models.zoo import build_model
from ui.figures.home import TITLE_CHARS, sample_grid

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TRAIN_TAB = "Train a model"


def app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=180)


@pytest.fixture(autouse=True)
def short_lived_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """The training daemon a test starts exits soon after its queue is empty."""
    monkeypatch.setenv("LAYERSCOPE_WORKER_IDLE_S", "5")


def click_train(at: AppTest) -> AppTest:
    at.button[[b.label for b in at.button].index("Train")].click().run()
    assert not at.exception
    return at


def rerun_until(at: AppTest, done: callable, seconds: float = 180) -> AppTest:
    deadline = time.time() + seconds
    while not done(at) and time.time() < deadline:
        time.sleep(0.5)
        at.run()
        assert not at.exception
    assert done(at)
    return at


def test_default_run_shows_accuracy_and_charts() -> None:
    at = app().run()
    assert not at.exception
    assert at.title[0].value == "cnn-shapes"
    accuracy = next(m for m in at.metric if m.label == "Test accuracy")
    assert float(accuracy.value.rstrip("%")) > 95
    assert at.query_params["run"] == ["cnn-shapes"] or at.query_params["run"] == "cnn-shapes"
    captions = " ".join(c.value for c in at.caption)
    assert "95 % CI" in captions and "n = 1,500" in captions and "held-out test split" in captions
    assert not at.warning  # far above chance


def test_first_visit_says_what_this_is_and_where_to_start() -> None:
    at = app().run()
    assert "layerscope" in at.markdown[0].value and "Start here" in at.markdown[0].value
    links = {link.proto.page: link.proto.query_string for link in at.main.get("page_link")}
    assert links == {
        "feature_maps": "run=cnn-shapes",
        "projections": "run=cnn-shapes",
        "attention": "run=vit-shapes",  # the selected CNN has no attention
        "attributions": "run=cnn-shapes",
    }


def test_unknown_run_in_url_falls_back() -> None:
    at = app()
    at.query_params["run"] = "no-such-run"
    at.query_params["sample"] = "999999"
    at.run()
    assert not at.exception
    assert at.title[0].value == "cnn-shapes"
    assert len(at.toast) >= 1


def test_a_link_opens_the_train_tab() -> None:
    at = app()
    at.query_params["home_tab"] = TRAIN_TAB
    at.run()
    assert not at.exception
    assert at.session_state["home_tab"] == TRAIN_TAB


def test_train_tiny_run_from_widgets(isolated_runs: Path) -> None:
    at = app().run()
    at.selectbox(key="train_dataset").set_value("digits")
    at.selectbox(key="train_arch").set_value("mlp")
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_samples").set_value(300)
    at.text_input(key="train_name").set_value("tiny-mlp")
    click_train(at)
    if "training_job" in at.session_state:  # queued or running: Train is off, and says why
        assert next(b for b in at.button if b.label == "Train").disabled
        assert any("Your job **tiny-mlp**" in c.value for c in at.caption)
        assert at.query_params["job"] == at.session_state["training_job"]  # a reload finds it
    rerun_until(at, lambda at: at.title[0].value == "tiny-mlp")
    assert at.session_state["run"] == "tiny-mlp"
    assert "tiny-mlp" in [r.name for r in list_runs()]
    assert at.session_state["home_tab"] == TRAIN_TAB  # still where the user was
    assert any("Trained **tiny-mlp**: 1 epoch." in s.value for s in at.success)
    assert not next(b for b in at.button if b.label == "Train").disabled


def test_stop_from_the_page_says_what_was_kept(isolated_runs: Path) -> None:
    at = app().run()
    at.selectbox(key="train_arch").set_value("cnn")
    at.number_input(key="train_epochs").set_value(40)
    at.number_input(key="train_samples").set_value(1000)
    at.text_input(key="train_name").set_value("halted")
    click_train(at)
    assert at.session_state["home_tab"] == TRAIN_TAB
    job_id = at.session_state["training_job"]
    deadline = time.time() + 180
    while ((job := queue.get(job_id)).latest is None or job.latest.epoch < 2) and (
        time.time() < deadline
    ):
        time.sleep(0.2)
    at.run()
    assert at.get("progress") and "left" in at.get("progress")[0].proto.text
    assert any("every few steps" in c.proto.spec for c in at.get("plotly_chart"))  # live loss
    at.button(key="train_stop").click().run()
    rerun_until(at, lambda at: any("Stopped after epoch" in w.value for w in at.warning))
    message = next(w.value for w in at.warning if "Stopped after epoch" in w.value)
    kept = int(message.split("epoch ")[1].split(";")[0])
    assert kept >= 1 and f"kept {kept} epoch" in message
    assert at.title[0].value == "halted" and at.session_state["home_tab"] == TRAIN_TAB


def test_delete_asks_first(isolated_runs: Path) -> None:
    train(TrainConfig(model="mlp", dataset="digits", n_samples=200, epochs=1), name="doomed")
    at = app()
    at.query_params["run"] = "doomed"
    at.run()
    delete = at.button(key="home_delete")
    assert delete.disabled  # nothing happens without the confirmation
    at.checkbox(key="home_delete_confirm_doomed").check().run()
    at.button(key="home_delete").click().run()
    assert not at.exception
    assert "doomed" not in [r.name for r in list_runs()]
    assert at.title[0].value == "cnn-shapes"


def test_model_at_chance_is_flagged(isolated_runs: Path, tmp_path: Path) -> None:
    save_file(build_model("mlp", (1, 8, 8), 10).state_dict(), tmp_path / "random.safetensors")
    name = import_run("mlp", tmp_path / "random.safetensors", "digits").name
    at = app()
    at.query_params["run"] = name
    at.run()
    assert not at.exception
    assert any("mean little" in w.value for w in at.warning)
    assert any("not above chance" in c.value for c in at.caption)
    assert any("How this run was imported" in e.label for e in at.expander)


def test_sample_titles_are_short_and_full_on_hover() -> None:
    names = ("T-shirt/top", "an extremely long class name", "cat")
    fig = sample_grid(
        np.zeros((3, 3, 32, 32), np.float32), np.array([0, 1, 2]), np.array([0, 2, 1]), names
    )
    titles = fig.layout.annotations
    for line in (part for t in titles for part in t.text.split("<br>")):
        assert len(line.replace("<b>", "").replace("</b>", "").removeprefix("→ ")) <= TITLE_CHARS
    assert "an extremely long class name" in titles[1].hovertext
    assert titles[1].text.count("<br>") == 1 and titles[0].text == "T-shirt/top"


def test_reload_finds_the_job_and_a_taken_name_is_said(isolated_runs: Path) -> None:
    train(TrainConfig(model="mlp", dataset="digits", n_samples=200, epochs=1), name="dup")
    at = app().run()
    at.selectbox(key="train_arch").set_value("mlp")
    at.selectbox(key="train_dataset").set_value("digits")
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_samples").set_value(300)
    at.text_input(key="train_name").set_value("dup")
    click_train(at)
    assert any("already called **dup**: yours will be **dup-2**" in i.value for i in at.info)
    reloaded = app()  # a new session on the same URL, as a reload is
    reloaded.query_params.update(dict(at.query_params))
    reloaded.run()
    assert reloaded.session_state["training_job"] == at.session_state["training_job"]
    assert reloaded.session_state["home_tab"] == TRAIN_TAB
    rerun_until(reloaded, lambda at: any("Trained **dup-2**" in s.value for s in at.success))
    assert reloaded.title[0].value == "dup-2" and "job" not in reloaded.query_params
    assert read_run(isolated_runs / "dup").history  # the first run is untouched


def test_queue_limits_are_said(isolated_runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYERSCOPE_MAX_EPOCH_SAMPLES", "1000")
    at = app().run()
    at.number_input(key="train_epochs").set_value(5)
    click_train(at)
    assert "training_job" not in at.session_state
    assert any("too large for the class queue: 5 epochs × 10,000" in e.value for e in at.error)
    assert not next(b for b in at.button if b.label == "Train").disabled


def test_run_deleted_while_shown(isolated_runs: Path) -> None:
    train(TrainConfig(model="mlp", dataset="digits", n_samples=200, epochs=1), name="gone")
    at = app()
    at.query_params["run"] = "gone"
    at.run()
    assert at.title[0].value == "gone"
    shutil.rmtree(isolated_runs / "gone")  # another session (or a person) deletes it
    at.run()
    assert not at.exception
    assert at.session_state["run"] != "gone"
    assert any("gone" in t.value for t in at.toast) or any("gone" in w.value for w in at.warning)
