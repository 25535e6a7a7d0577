"""The features page in AppTest: train a small SAE on the shipped CNN through the form, then
every tab, a link to a feature, and deleting it."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.dictionary import store

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_page(**query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    at.switch_page("pages/features.py").run()
    assert not at.exception, at.exception
    return at


def show_tab(at: AppTest, tab: str) -> AppTest:
    at.session_state["fe_tab"] = tab
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def test_train_an_sae_then_every_tab_and_delete() -> None:
    at = open_page(run="cnn-shapes")
    assert any("no sparse autoencoder yet" in i.value for i in at.info)
    assert at.selectbox(key="fe_train_layer").value == "block2"
    at.select_slider(key="fe_train_steps").set_value(100).run()
    at.button(key="fe_train_go").click().run()
    assert not at.exception, at.exception
    (saved,) = store.list_saes("cnn-shapes")
    assert saved.layer == "block2" and saved.d_sae == 256 and saved.k == 16
    assert at.selectbox(key="fe_sae").value == saved.id
    assert len(at.metric) == 5  # health: FVE, L0, dead, accuracy, spliced
    assert any("n = 1500" in c.value and "Wilson" in c.value for c in at.caption)
    show_tab(at, "Feature")
    assert at.number_input(key="fe_feature").value == 0
    at.number_input(key="fe_feature").set_value(3).run()
    assert not at.exception, at.exception
    assert any("Top 12 of 1,500" in m.value for m in at.markdown)
    assert any("prediction goes from" in c.value or "silent" in c.value for c in at.caption)
    at.select_slider(key="fe_factor").set_value(4.0).run()
    assert not at.exception, at.exception
    at.button(key="fe_vis_go").click().run()
    assert not at.exception, at.exception
    assert any(m.label == "Projection on the direction" for m in at.metric)
    show_tab(at, "This image")
    assert any("features fire somewhere" in c.value for c in at.caption)
    show_tab(at, "Ground truth")
    assert any("mean AUC" in c.value for c in at.caption)
    assert len(at.dataframe[0].value) == 6 + 8 + 4 + 3 + 9 + 4 + 4  # classes + every factor
    show_tab(at, "Feature map")
    at.text_input(key="fe_search").set_value("red").run()
    assert not at.exception, at.exception
    assert any("match “red”" in m.value for m in at.markdown)
    at.button(key="fe_map_go").click().run()
    assert at.session_state["fe_tab"] == "Feature"
    at.button(key="fe_delete").click().run()
    assert not at.exception, at.exception
    assert store.list_saes("cnn-shapes") == []


def test_a_link_to_an_unknown_sae_falls_back() -> None:
    at = open_page(run="cnn-shapes", fe_sae="nope")
    assert not at.exception
    assert any("no sparse autoencoder yet" in i.value for i in at.info)
