"""core.sanity: cascading randomisation on a copy, top down, with rank correlations."""

from __future__ import annotations

import numpy as np
import torch

from core.attribution import AttributionOptions
from core.hooks import count_hooks
from core.models import build_model
from core.sanity import cascading_randomization, parameter_layers, randomize_


def test_cascading_randomization_leaves_the_model_alone() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", (3, 16, 16), 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    image = torch.rand(3, 16, 16).numpy()
    done = []
    check = cascading_randomization(
        model,
        image,
        ("saliency", "grad_cam"),
        AttributionOptions(),
        max_steps=3,
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
