"""Audits: the shapes shortcut, slices against a hand count, FastCAV against its formula, the
t-test against scipy, captum's TCAV without files left behind, and the report (reproducible,
self-contained, honest about the parts it cannot make)."""

from __future__ import annotations

import hashlib
import math
import random
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from core.analysis import Batch
from core.audit import concepts
from core.audit.concepts import ConceptOptions, concept_test, fastcav, t_test, tcav_score
from core.audit.slices import CLASS, slice_scores
from core.data.datasets import Shortcut, make_shapes, split_indices
from core.models.evaluation import wilson_interval


def _sha(data) -> str:
    h = hashlib.sha256()
    h.update(data.images.tobytes())
    h.update(data.labels.tobytes())
    for name in sorted(data.factors):
        h.update(data.factors[name].tobytes())
    return h.hexdigest()


def test_without_a_shortcut_shapes_are_bit_identical_to_before() -> None:
    # the hash of make_shapes(400, seed=3, size=24) before the shortcut option existed
    expected = "8fa4a5e8fdd8ad7e8cfb41a95568ea33cf3313485492cf43098630edf90f1844"
    assert _sha(make_shapes(400, seed=3, size=24)) == expected
    assert _sha(make_shapes(400, seed=3, size=24, shortcut=None)) == expected


def test_the_shortcut_ties_colour_to_the_label_in_training_only() -> None:
    n, seed = 4000, 1
    plain = make_shapes(n, seed=seed, size=16)
    tied = make_shapes(n, seed=seed, size=16, shortcut=Shortcut("colour", 0.9))
    aligned = make_shapes(n, seed=seed, size=16, shortcut=Shortcut("colour", 0.9, aligned=True))
    splits = split_indices(n, seed)
    np.testing.assert_array_equal(plain.labels, tied.labels)
    for name in plain.factors:  # every other factor keeps its draw
        if name != "colour":
            np.testing.assert_array_equal(plain.factors[name], tied.factors[name])

    def agreement(data, idx) -> float:
        return float((data.factors["colour"][idx] == data.labels[idx] % 8).mean())

    # 90 % set to the label's colour, plus the 1/8 of the rest that drew it anyway
    assert agreement(tied, splits.train) == pytest.approx(0.9 + 0.1 / 8, abs=0.02)
    for idx in (splits.val, splits.test):
        assert agreement(tied, idx) == pytest.approx(1 / 8, abs=0.03)
        np.testing.assert_array_equal(tied.images[idx], plain.images[idx])
    assert agreement(aligned, splits.test) == 1.0
    np.testing.assert_array_equal(aligned.images[splits.train], tied.images[splits.train])
    assert "shortcut colour=0.9" in tied.info.source


def test_a_shortcut_parses_and_refuses_nonsense() -> None:
    assert Shortcut.parse("colour=0.95") == Shortcut("colour", 0.95)
    assert Shortcut.parse(None) is None and Shortcut.parse("") is None
    assert str(Shortcut("background", 0.8)) == "background=0.8"
    with pytest.raises(ValueError, match="factor"):
        Shortcut.parse("flavour=0.9")
    with pytest.raises(ValueError, match="strength"):
        Shortcut.parse("colour=1.5")


def test_slices_match_a_hand_count() -> None:
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 0])
    predicted = np.array([0, 1, 1, 1, 0, 2, 2, 0])
    probs = np.eye(3)[predicted] * 0.5 + 0.5 / 3
    colour = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    result = slice_scores(predicted, probs, labels, {"colour": colour})
    rows = {(f, v): i for i, (f, v) in enumerate(zip(result.factors, result.values, strict=True))}
    # colour 1: samples 1, 2, 4, 7 -> correct 2, 7 (2 of 4); colour 0: 0, 3, 5, 6 -> all right
    i = rows[("colour", 1)]
    assert (result.count[i], result.correct[i]) == (4, 2)
    assert (result.low[i], result.high[i]) == pytest.approx(wilson_interval(2, 4))
    assert result.accuracy[rows[("colour", 0)]] == 1.0
    # class 0: samples 0, 1, 7 -> 2 right; class 1: 2, 3, 4 -> 2 right; class 2: both right
    assert result.correct[rows[(CLASS, 0)]] == 2 and result.count[rows[(CLASS, 1)]] == 3
    assert result.confusion[rows[(CLASS, 1)]].tolist() == [[0, 0, 0], [1, 2, 0], [0, 0, 0]]
    assert result.confidence[i] == pytest.approx(0.5 + 0.5 / 3)
    assert result.overall == pytest.approx(6 / 8) and result.n == 8
    # worst first: the two slices at 2/3 and 2/4 lead, 50 % first
    assert (result.factors[0], result.values[0]) == ("colour", 1)
    assert list(result.accuracy) == sorted(result.accuracy)
    assert result.names({"colour": ("red", "blue")}, ("a", "b", "c"))[0] == "colour=blue"


def test_fastcav_is_the_difference_of_means_and_the_score_counts_signs() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 5)), rng.normal(size=(9, 5))
    expected = a.mean(0) - b.mean(0)
    np.testing.assert_allclose(fastcav(a, b), expected / np.linalg.norm(expected))
    grads = np.array([[1.0, 0, 0, 0, 0], [-1.0, 0, 0, 0, 0], [2.0, 0, 0, 0, 0]])
    assert tcav_score(grads, np.array([1.0, 0, 0, 0, 0])) == pytest.approx(2 / 3)


def test_the_t_test_is_scipys_two_sided_pooled_test() -> None:
    x = np.array([0.9, 0.95, 1.0, 0.85, 0.9])
    y = np.array([0.4, 0.6, 0.5, 0.3, 0.7])
    nx, ny = len(x), len(y)
    pooled = ((nx - 1) * x.var(ddof=1) + (ny - 1) * y.var(ddof=1)) / (nx + ny - 2)
    t = (x.mean() - y.mean()) / math.sqrt(pooled * (1 / nx + 1 / ny))
    expected = 2 * stats.t.sf(abs(t), nx + ny - 2)
    assert t_test(x, y) == pytest.approx(expected)
    assert t_test(x, y) == pytest.approx(stats.ttest_ind(x, y).pvalue)
    assert math.isnan(t_test(np.ones(4), np.ones(4)))


def _red_model() -> nn.Module:
    """Class 0's logit is the sum of the red channel; class 1's is its negative."""
    model = nn.Sequential()
    model.add_module("features", nn.Identity())
    model.add_module("flatten", nn.Flatten())
    head = nn.Linear(3 * 4 * 4, 2, bias=False)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[0, :16] = 1.0
        head.weight[1, :16] = -1.0
    model.add_module("head", head)
    return model.eval()


def _red_batch(n: int = 80) -> Batch:
    rng = np.random.default_rng(0)
    images = rng.random((n, 3, 4, 4), dtype=np.float32) * 0.5
    red = np.arange(n) % 4 == 0
    images[red, 0] += 0.5
    return Batch(images, np.arange(n) % 2, {"colour": (~red).astype(np.int64)}, ("a", "b"))


@pytest.mark.parametrize("method", ["fastcav", "tcav"])
def test_a_concept_that_drives_the_class_is_significant(
    method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # not another test's CAVs
    before = set(tmp_path.glob("layerscope-tcav-*"))
    options = ConceptOptions(
        factor="colour", value=0, target=0, layers=("features",), method=method,
        n_random=10, set_size=10, n_inputs=20,
    )  # fmt: skip
    test = concept_test(_red_model(), _red_batch(), options)
    assert test.scores.shape == test.random_scores.shape == (1, 10)
    np.testing.assert_array_equal(test.scores, 1.0)  # every red CAV raises class 0
    assert test.significant.all() and test.verdicts() == ("significant",)
    assert test.p_values[0] == pytest.approx(t_test(test.scores[0], test.random_scores[0]))
    against = concept_test(_red_model(), _red_batch(), ConceptOptions(**{
        **options.__dict__, "target": 1}))  # fmt: skip
    np.testing.assert_array_equal(against.scores, 0.0)  # ... and lowers class 1
    assert set(tmp_path.glob("layerscope-tcav-*")) == before  # no CAV kept
    random.seed(1)  # another state of Python's random, which captum's classifier shuffles with
    again = concept_test(_red_model(), _red_batch(), options)
    np.testing.assert_array_equal(again.random_scores, test.random_scores)


def test_a_concept_test_needs_concept_images() -> None:
    batch = _red_batch()
    with pytest.raises(ValueError, match="factor"):
        concept_test(_red_model(), batch, ConceptOptions(factor="size", layers=("features",)))
    with pytest.raises(ValueError, match="concept"):
        concept_test(_red_model(), batch, ConceptOptions(value=7, layers=("features",)))


def test_a_concept_can_come_from_an_image_folder(tmp_path, monkeypatch) -> None:
    from PIL import Image

    monkeypatch.setenv("LAYERSCOPE_DATA", str(tmp_path))
    for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (tmp_path / "concepts" / name).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (4, 4), colour).save(tmp_path / "concepts" / name / f"{i}.png")
    options = ConceptOptions(
        folder=str(tmp_path / "concepts"), concept="red", layers=("features",), n_random=5
    )
    test = concept_test(_red_model(), _red_batch(), options)
    assert test.concept == "folder:red" and test.n_concept == 6
    np.testing.assert_array_equal(test.scores, 1.0)
    with pytest.raises(PermissionError):
        concept_test(_red_model(), _red_batch(), ConceptOptions(folder="/etc", concept="x"))


def test_default_layers_are_few_and_end_deep() -> None:
    from core.models.zoo import build_model

    model = build_model("cnn", (3, 16, 16), 3)
    layers = concepts.default_layers(model, (3, 16, 16))
    assert 1 <= len(layers) <= concepts.MAX_LAYERS
    assert layers[-1] == "head.pool"


# --- the report --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from core.models.train import TrainConfig, train

    root = tmp_path_factory.mktemp("runs")
    config = TrainConfig(
        dataset="shapes", n_samples=600, image_size=16, epochs=1, device="cpu",
        shortcut="colour=0.95",
    )  # fmt: skip
    path = train(config, name="tiny-shortcut", runs_root=root)
    assert path is not None
    return path


SMALL = dict(
    n_random=3, set_size=10, concept_inputs=10, attribution_samples=(0,), faithfulness_n=8,
    faithfulness_chunk=4,
)  # fmt: skip


def test_the_report_is_complete_reproducible_and_self_contained(tiny_run: Path, tmp_path) -> None:
    from core.audit.html import write_report
    from core.audit.report import AuditSettings, build_audit

    settings = AuditSettings(**SMALL)
    seen = []
    audit = build_audit(tiny_run.name, settings, roots=[tiny_run.parent], progress=lambda d, t:
                        seen.append(d / t))  # fmt: skip
    assert [s.problem for s in audit.sections] == [None] * len(audit.sections)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    texts = " ".join(f.text for f in audit.findings)
    assert "colour" in texts and "randomisation check" in texts and "random pixel orders" in texts
    accuracy = audit.sections[0].tables[0]
    assert [row[0] for row in accuracy.rows] == [
        "test (independent)",
        "test, colour aligned with the label",
    ]
    page, evidence = write_report(audit, tmp_path / "one")
    again = build_audit(tiny_run.name, settings, roots=[tiny_run.parent])
    page2, evidence2 = write_report(again, tmp_path / "two")
    assert page.read_bytes() == page2.read_bytes()  # same numbers, same bytes
    assert evidence.read_bytes() == evidence2.read_bytes()
    html = page.read_text()
    assert html.count("<script type='text/javascript'>") == 1  # plotly inlined once
    assert "cdn." not in html.split("</script>", 1)[1] and "id='concepts'" in html
    names = zipfile.ZipFile(evidence).namelist()
    for table in ("accuracy", "confusion", "slices", "concepts", "report_card",
                  "sanity_checks", "faithfulness"):  # fmt: skip
        assert f"evidence/{table}.csv" in names
    provenance = zipfile.ZipFile(evidence).read("evidence/provenance.json").decode()
    for key in ("weights_file_sha256", "dataset_sha256", "captum", '"seed": 0', "shortcut"):
        assert key in provenance


def test_an_incomplete_run_gives_a_report_that_says_what_is_missing(tiny_run: Path, tmp_path):
    import shutil

    from core.audit.html import report_html
    from core.audit.report import AuditSettings, build_audit

    broken = tmp_path / "runs" / "broken"
    shutil.copytree(tiny_run, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    audit = build_audit("broken", AuditSettings(**SMALL), roots=[broken.parent])
    assert all(s.problem and "model.safetensors is missing" in s.problem for s in audit.sections)
    assert any("could not be made" in f.text for f in audit.findings)
    assert "This part could not be made" in report_html(audit)


def test_the_command_line_writes_both_files_and_refuses_unknown_runs(tiny_run, tmp_path, capsys):
    from core.audit.__main__ import main

    assert main(["no-such-run", "--out", str(tmp_path)]) == 2
    assert "No run named" in capsys.readouterr().err
