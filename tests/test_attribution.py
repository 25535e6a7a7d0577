"""core.attributions.methods and .layer_units: captum's numbers, completeness, hook hygiene."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from captum.attr import (
    DeepLift,
    GradientShap,
    GuidedBackprop,
    GuidedGradCam,
    IntegratedGradients,
    LayerAttribution,
    LayerConductance,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import nn

from core.activations import list_layers
from core.analysis import Batch
from core.attributions.layer_units import UnitOptions, default_unit_layer, layer_units
from core.attributions.methods import (
    CAM_METHODS,
    METHODS,
    AttributionOptions,
    attribute,
    attribution_maps,
    cam_compatible,
    default_cam_layer,
    distinct_relus,
    supported_methods,
)
from core.attributions.sanity import randomize_
from core.hooks import count_hooks
from core.models.zoo import build_model

SHAPE = (3, 16, 16)


@pytest.fixture(scope="module")
def cnn() -> nn.Module:
    torch.manual_seed(0)
    model = build_model("cnn", SHAPE, 4)
    for m in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.rand(SHAPE, generator=torch.Generator().manual_seed(1))


def test_integrated_gradients_completeness(cnn: nn.Module, image: torch.Tensor) -> None:
    options = AttributionOptions(target=2, ig_steps=64, internal_batch_size=8)
    result = attribute(cnn, image, "integrated_gradients", options)
    with torch.no_grad():
        gap = float(cnn(image[None])[0, 2] - cnn(torch.zeros(1, *SHAPE))[0, 2])
    total = float(result.map.sum())
    assert abs(total - gap) == pytest.approx(result.delta, abs=1e-4)
    assert result.delta < 0.05 * abs(gap)


def _captum(cnn: nn.Module, x: torch.Tensor, method: str) -> torch.Tensor:
    base = torch.zeros_like(x)
    if method == "saliency":
        return Saliency(cnn).attribute(x, target=1)
    if method == "integrated_gradients":
        ig = IntegratedGradients(cnn)
        return ig.attribute(x, base, target=1, n_steps=32, internal_batch_size=16)
    if method == "gradient_shap":
        torch.manual_seed(0)
        np.random.seed(0)
        return GradientShap(cnn).attribute(x, base, target=1, n_samples=16, stdevs=0.1)
    if method == "deeplift":
        return DeepLift(cnn).attribute(x, base, target=1)
    if method == "occlusion":
        return Occlusion(cnn).attribute(
            x, (3, 2, 2), strides=(3, 1, 1), baselines=base, target=1, perturbations_per_eval=16
        )
    if method == "guided_backprop":
        return GuidedBackprop(cnn).attribute(x, target=1)
    if method == "guided_grad_cam":
        return GuidedGradCam(cnn, cnn.block2).attribute(x, target=1)
    cam = LayerGradCam(cnn, cnn.block2).attribute(x, target=1, relu_attributions=True)
    return LayerAttribution.interpolate(cam, SHAPE[1:], "bilinear")[:, 0]


@pytest.mark.parametrize("method", list(METHODS))
def test_equals_captum(cnn: nn.Module, image: torch.Tensor, method: str) -> None:
    options = AttributionOptions(target=1, cam_layer="block2")
    ours = attribute(cnn, image, method, options)
    theirs = _captum(cnn, image[None], method)[0].detach().numpy()
    np.testing.assert_allclose(ours.map, theirs, rtol=1e-5, atol=1e-6)
    assert ours.target == 1
    assert count_hooks(cnn) == 0


def test_noise_tunnel_equals_captum(cnn: nn.Module, image: torch.Tensor) -> None:
    options = AttributionOptions(target=0, smoothing="smoothgrad", smooth_samples=4)
    ours = attribute(cnn, image, "saliency", options)
    torch.manual_seed(0)
    theirs = NoiseTunnel(Saliency(cnn)).attribute(
        image[None],
        nt_type="smoothgrad",
        nt_samples=4,
        nt_samples_batch_size=16,
        stdevs=0.1,
        target=0,
    )
    np.testing.assert_allclose(ours.map, theirs[0].numpy(), rtol=1e-5, atol=1e-7)


def test_target_defaults_to_prediction(cnn: nn.Module, image: torch.Tensor) -> None:
    with torch.no_grad():
        predicted = int(cnn(image[None]).argmax())
    assert attribute(cnn, image, "saliency", AttributionOptions()).target == predicted


def test_randomising_all_weights_changes_saliency(cnn: nn.Module, image: torch.Tensor) -> None:
    options = AttributionOptions(target=0)
    before = attribute(cnn, image, "saliency", options).heat
    scrambled = copy.deepcopy(cnn)
    generator = torch.Generator().manual_seed(0)
    for module in scrambled.modules():
        randomize_(module, generator)
    after = attribute(scrambled, image, "saliency", options).heat
    assert np.corrcoef(before.ravel(), after.ravel())[0, 1] < 0.5
    assert attribute(cnn, image, "saliency", options).heat == pytest.approx(before)


class _FailsUnderGrad(nn.Module):
    """A CNN-ish model whose forward raises whenever gradients are being taken."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            raise RuntimeError("boom")
        return self.head(self.relu(self.conv(x)))


@pytest.mark.parametrize("method", ["deeplift", "guided_backprop", "grad_cam", "guided_grad_cam"])
def test_no_hooks_left_after_an_error(method: str) -> None:
    model = _FailsUnderGrad().eval()
    with pytest.raises(RuntimeError, match="boom"):
        attribute(model, torch.rand(3, 8, 8), method, AttributionOptions(cam_layer="conv"))
    assert count_hooks(model) == 0


def test_bad_requests_are_value_errors(cnn: nn.Module, image: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="Unknown attribution method"):
        attribute(cnn, image, "lime", AttributionOptions())
    with pytest.raises(ValueError, match="Class 9 does not exist"):
        attribute(cnn, image, "saliency", AttributionOptions(target=9))
    with pytest.raises(ValueError, match="no layer"):
        attribute(cnn, image, "grad_cam", AttributionOptions(cam_layer="nope"))
    with pytest.raises(ValueError, match="spatial maps or a square grid"):
        attribute(cnn, image, "grad_cam", AttributionOptions(cam_layer="head.fc"))


def test_shared_relus_are_rewritten_for_deeplift() -> None:
    import torchvision

    model = torchvision.models.resnet18(num_classes=3).eval()
    rewritten = distinct_relus(model, SHAPE)
    relus = [m for m in rewritten.modules() if isinstance(m, nn.ReLU)]
    assert rewritten is not model and not any(m.inplace for m in relus)
    x = torch.rand(2, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x), model(x))
    assert distinct_relus(model, SHAPE) is rewritten  # made once
    assert distinct_relus(build_model("cnn", SHAPE, 2), SHAPE) is not rewritten
    result = attribute(model, x[0], "deeplift", AttributionOptions(target=0))
    assert np.isfinite(result.map).all() and count_hooks(model) == 0


def test_vit_grad_cam_reads_patch_tokens() -> None:
    torch.manual_seed(0)
    vit = build_model("vit", SHAPE, 3)
    assert default_cam_layer(list_layers(vit, SHAPE)) == "blocks.3.norm1"
    image = torch.rand(SHAPE)
    # Grad-CAM is rectified, so a class may get an all-zero map; some class must not.
    maps = [attribute(vit, image, "grad_cam", AttributionOptions(target=t)).map for t in range(3)]
    assert all(m.shape == SHAPE[1:] for m in maps)
    assert max(np.abs(m).max() for m in maps) > 0


def _batch(*images: torch.Tensor) -> Batch:
    return Batch(torch.stack(images).numpy(), np.full(len(images), -1))


def test_layer_attribution_completeness_and_captum(cnn: nn.Module, image: torch.Tensor) -> None:
    options = UnitOptions(target=3, ig_steps=64, layer="block2", top=3)
    lig = layer_units(cnn, _batch(image), replace(options, method="integrated_gradients"))
    with torch.no_grad():
        gap = float(cnn(image[None])[0, 3] - cnn(torch.zeros(1, *SHAPE))[0, 3])
    assert abs(float(lig.per_unit.sum()) - gap) == pytest.approx(lig.deltas[0], abs=1e-4)
    cond = layer_units(cnn, _batch(image, image), options)
    theirs = LayerConductance(cnn, cnn.block2).attribute(
        image[None], torch.zeros(1, *SHAPE), target=3, n_steps=64, internal_batch_size=16
    )
    np.testing.assert_allclose(cond.values[1], theirs[0].detach().numpy(), rtol=1e-5, atol=1e-6)
    assert cond.per_unit.shape == (2, 32) and cond.targets.tolist() == [3, 3]
    assert len(cond.top) == 3
    assert np.abs(cond.per_unit[0, cond.top[0]]) == np.abs(cond.per_unit[0]).max()
    assert count_hooks(cnn) == 0


def test_layer_units_default_layer(cnn: nn.Module, image: torch.Tensor) -> None:
    layers = list_layers(cnn, SHAPE)
    assert default_unit_layer(layers) == default_cam_layer(layers) == "block3"
    assert layer_units(cnn, _batch(image), UnitOptions()).layer == "block3"
    with pytest.raises(ValueError, match="Unknown layer method"):
        layer_units(cnn, _batch(image), UnitOptions(method="lime"))  # type: ignore[arg-type]


def test_maps_of_a_batch_equal_one_call_each(cnn: nn.Module, image: torch.Tensor) -> None:
    images = (image, image.flip(-1))
    options = AttributionOptions(target=1, methods=("saliency", "integrated_gradients"))
    done = []
    maps = attribution_maps(cnn, _batch(*images), options, progress=lambda i, n: done.append(i))
    assert maps.heats.shape == (2, 2, *SHAPE[1:]) and done == [1, 2, 3, 4]
    for i, x in enumerate(images):
        for j, method in enumerate(options.methods):
            one = attribute(cnn, x, method, options)
            np.testing.assert_allclose(maps.heats[i, j], one.heat, rtol=1e-5, atol=1e-6)
    assert np.isnan(maps.deltas[:, 0]).all() and (maps.deltas[:, 1] >= 0).all()
    assert maps.targets.tolist() == [1, 1]


def test_grad_cam_is_compatible_only_with_maps_or_tokens(cnn: nn.Module) -> None:
    assert cam_compatible(list_layers(cnn, SHAPE))
    mlp = build_model("mlp", SHAPE, 4)
    verdict = cam_compatible(list_layers(mlp, SHAPE))
    assert not verdict and "spatial maps or tokens" in verdict.reason
    assert supported_methods(list_layers(mlp, SHAPE)) == tuple(
        m for m in METHODS if m not in CAM_METHODS
    )
    defaults = attribution_maps(mlp, _batch(torch.rand(SHAPE)), AttributionOptions())
    assert defaults.methods == supported_methods(list_layers(mlp, SHAPE))
