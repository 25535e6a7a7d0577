"""core.attributions.sanity: cascading randomisation on a copy, top down, with rank correlations."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from core.analysis import Batch
from core.attributions import sanity
from core.attributions.sanity import (
    FAILS,
    PASSES,
    SIMILARITY_THRESHOLD,
    UNDETERMINED,
    SanityCheck,
    SanityOptions,
    parameter_layers,
    randomize_,
    sanity_check,
)
from core.hooks import count_hooks
from core.models.zoo import build_model


def _batch(image: np.ndarray) -> Batch:
    return Batch(image[None], np.array([-1]))


def test_cascading_randomization_leaves_the_model_alone() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", (3, 16, 16), 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    image = torch.rand(3, 16, 16).numpy()
    done = []
    check = sanity_check(
        model,
        _batch(image),
        SanityOptions(methods=("saliency", "grad_cam"), steps=3),
        progress=lambda i, n: done.append((i, n)),
    )
    assert check.steps[0] == "original" and len(check.steps) == 4
    assert check.steps[-1] == "block1.conv1"  # the lowest layer comes last
    assert check.heats.shape == (4, 2, 16, 16)
    np.testing.assert_allclose(check.spearman[0], 1.0)
    assert check.spearman[-1, 0] < 0.9  # saliency of a random network is another map
    assert done == [(1, 3), (2, 3), (3, 3)]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])
    assert count_hooks(model) == 0


def test_default_methods_are_those_the_model_supports() -> None:
    torch.manual_seed(0)
    image = torch.rand(3, 8, 8).numpy()
    mlp = build_model("mlp", (3, 8, 8), 2)
    check = sanity_check(mlp, _batch(image), SanityOptions(steps=2))
    assert check.methods == ("saliency", "integrated_gradients", "guided_backprop")
    assert len(check.steps) == 3


def test_parameter_layers_top_first() -> None:
    model = build_model("cnn", (3, 16, 16), 3)
    layers = parameter_layers(model)
    assert layers[0] == "head.fc" and layers[-1] == "block1.conv1"
    assert len(layers) == 3 * 4 + 1  # conv1, bn1, conv2, bn2 per block, and the head


def test_randomize_keeps_scale_and_loses_structure() -> None:
    conv = torch.nn.Conv2d(16, 32, 3)
    old = conv.weight.detach().clone()
    randomize_(conv, torch.Generator().manual_seed(0))
    new = conv.weight.detach()
    assert abs(float(new.std() / old.std()) - 1) < 0.05
    assert abs(float(np.corrcoef(old.ravel(), new.ravel())[0, 1])) < 0.05


def _check(final_abs: list[float]) -> SanityCheck:
    """A two-step check whose last |map| correlations are ``final_abs``, one per method."""
    m = len(final_abs)
    methods = ("saliency", "grad_cam", "guided_backprop", "integrated_gradients", "deconvolution")
    return SanityCheck(
        methods=methods[:m],
        steps=("original", "block1.conv1"),
        heats=np.zeros((2, m, 4, 4), np.float32),
        spearman=np.stack([np.ones(m), np.zeros(m)]),
        spearman_abs=np.stack([np.ones(m), final_abs]),
        target=0,
    )


def test_verdict_follows_the_final_similarity_not_its_size() -> None:
    check = _check([1.0, -0.62, np.nan, SIMILARITY_THRESHOLD, 0.49])
    assert check.threshold == 0.5 and "Spearman" in check.statistic
    np.testing.assert_allclose(check.final_similarity, [1.0, -0.62, np.nan, 0.5, 0.49])
    # unchanged map fails; anti-correlated map changed, so it passes; constant: undetermined
    assert check.verdicts == (FAILS, PASSES, UNDETERMINED, FAILS, PASSES)
    np.testing.assert_array_equal(check.passed, [False, True, False, False, True])
    assert check.verdict_text("saliency").startswith("Saliency FAILS")
    assert "-0.62 < 0.5" in check.verdict_text("grad_cam")
    assert "passes" in check.verdict_text("grad_cam")
    assert check.verdict_text("guided_backprop").endswith(
        "undetermined, a map is constant, so there is no rank correlation to judge."
    )
    assert "0.5" in check.rule_text and check.statistic in check.rule_text


def test_no_randomisation_step_is_undetermined() -> None:
    check = SanityCheck(
        ("saliency",), ("original",), np.zeros((1, 1, 2, 2)), np.ones((1, 1)), np.ones((1, 1)), 0
    )
    assert check.verdicts == (UNDETERMINED,)


def test_cascading_verdicts_end_to_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """A map that ignores the model fails, one that moves passes, one that goes flat is neither."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).eval()
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4)

    def fake_attribute(net: nn.Module, img: np.ndarray, method: str, options: object):
        original = net is model
        heat = {
            "saliency": img[0],  # an edge detector: the same map whatever the weights
            "grad_cam": img[0] if original else 15 - img[0],  # |map| ranks reversed
            "guided_backprop": img[0] if original else np.zeros((4, 4), np.float32),
        }[method]
        return SimpleNamespace(heat=heat, target=1)

    monkeypatch.setattr(sanity, "attribute", fake_attribute)
    options = SanityOptions(methods=("saliency", "grad_cam", "guided_backprop"))
    check = sanity_check(model, _batch(image), options)
    assert check.final_similarity[0] == pytest.approx(1.0)
    assert check.final_similarity[1] == pytest.approx(-1.0)
    assert check.verdicts == (FAILS, PASSES, UNDETERMINED)


def test_correlation_figure_draws_the_core_rule() -> None:
    from ui.figures.attributions import correlation_figure, sanity_grid

    check = _check([1.0, -0.62])
    labels = ["Saliency", "Grad-CAM"]
    fig = correlation_figure(
        check.spearman_abs,
        labels,
        check.steps,
        threshold=check.threshold,
        verdicts=check.verdicts,
        statistic=check.statistic,
    )
    assert [t.name for t in fig.data] == ["Saliency: FAILS", "Grad-CAM: passes"]
    assert fig.layout.shapes[0].y0 == check.threshold
    assert fig.layout.yaxis.title.text == check.statistic
    grid = sanity_grid(check.heats, labels, check.steps, verdicts=check.verdicts)
    assert "Grad-CAM: passes" in [a.text for a in grid.layout.annotations]
