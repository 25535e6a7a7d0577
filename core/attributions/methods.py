"""Which input pixels drive a prediction: every captum attribution method behind one call.

:func:`attribute` takes a method name and :class:`MethodOptions` and returns plain arrays,
so pages, the sanity check and the faithfulness curves never touch captum themselves; the
registered analysis :func:`attribution_maps` maps a batch with a set of methods. Grad-CAM
applies only where a layer has maps or tokens (:func:`cam_compatible`).

What can go wrong, and what this module does about it:

- captum registers hooks (DeepLift, Guided Backprop, Grad-CAM); models are shared between
  sessions, so every call holds :func:`core.hooks.model_lock` and captum removes its hooks in
  ``finally`` blocks, also after an error.
- DeepLift and Guided Backprop override the backward pass of each ReLU *module*; a ReLU module
  used twice in one forward (torchvision's ResNets) or an in-place one gives wrong results.
  For such models these two methods run on a ``torch.fx`` rewrite of the model in which every
  ReLU call is its own non-in-place module. The rewrite shares the original's parameters (no
  copy of the weights), and is made once per model. A model that fx cannot trace gets a
  ``ValueError`` saying so.
- Grad-CAM on a vision transformer: token layers ``[N, T, D]`` are read as a ``g x g`` grid of
  patch tokens (the CLS token dropped). At the last block's output the patch tokens get no
  gradient (the head reads only the CLS token), so the default layer is the first norm of the
  last block, which feeds attention.
- IG and GradientSHAP evaluate their steps/samples ``internal_batch_size`` at a time, so memory
  stays bounded on big models; randomness (GradientSHAP, NoiseTunnel) is seeded.
"""

from __future__ import annotations

import math
import time
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from captum._utils.gradient import compute_layer_gradients_and_eval
from captum.attr import (
    Attribution as CaptumAttribution,
)
from captum.attr import (
    DeepLift,
    GradientAttribution,
    GradientShap,
    GuidedBackprop,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from captum.log import log_usage
from torch import nn

from core.activations import LayerInfo, list_layers
from core.analysis import COMPATIBLE, Batch, Compatibility, register
from core.device import model_device
from core.hooks import forward_hooks, get_module, model_lock

METHODS: dict[str, str] = {
    "saliency": "Saliency",
    "integrated_gradients": "Integrated Gradients",
    "gradient_shap": "GradientSHAP",
    "deeplift": "DeepLift",
    "occlusion": "Occlusion",
    "guided_backprop": "Guided Backprop",
    "grad_cam": "Grad-CAM",
    "guided_grad_cam": "Guided Grad-CAM",
}
"""Method name -> the name a reader knows it by."""

Baseline = Literal["black", "white", "blur"]
Smoothing = Literal["none", "smoothgrad", "smoothgrad_sq", "vargrad"]
BASELINES: tuple[str, ...] = get_args(Baseline)
SMOOTHING: tuple[str, ...] = get_args(Smoothing)
SMOOTHING_NAMES = {"smoothgrad": "SmoothGrad", "smoothgrad_sq": "SmoothGrad²", "vargrad": "VarGrad"}
"""Smoothing type -> the name a reader knows it by."""
CAM_METHODS = ("grad_cam", "guided_grad_cam")

# captum announces, on every call, things this module does on purpose.
for _message in (
    "Input Tensor 0 did not already require gradients",
    "Setting backward hooks on ReLU activations",
    "Setting forward, backward hooks and attributes on non-linear",
):
    warnings.filterwarnings("ignore", message=_message)


@dataclass(frozen=True)
class MethodOptions:
    """How each method attributes; every analysis of this family takes these fields."""

    target: int | None = None  # class to explain; None: the model's prediction
    baseline: Baseline = "black"  # the "absent" input of IG, GradientSHAP, DeepLift, Occlusion
    ig_steps: int = 32  # Integrated Gradients' integration steps
    internal_batch_size: int = 16  # inputs per pass inside IG, SHAP, Occlusion, NoiseTunnel
    occlusion_window: int | None = None  # side of Occlusion's square patch; None: H // 8
    occlusion_stride: int | None = None  # step between patches; None: half the window
    shap_samples: int = 16  # GradientSHAP's random points between baseline and input
    shap_stdev: float = 0.1  # noise GradientSHAP adds to each point
    cam_layer: str = ""  # Grad-CAM's layer; "": default_cam_layer
    smoothing: Smoothing = "none"  # NoiseTunnel type (SmoothGrad, SmoothGrad², VarGrad)
    smooth_samples: int = 8  # noisy copies NoiseTunnel averages
    smooth_stdev: float = 0.1  # their noise standard deviation (pixels are in [0, 1])
    seed: int = 0  # seed of GradientSHAP's and NoiseTunnel's random draws


@dataclass(frozen=True)
class AttributionOptions(MethodOptions):
    """Which methods map the batch's images, and how (see :class:`MethodOptions`)."""

    methods: tuple[str, ...] = ()  # keys of METHODS; (): every method the model supports


@dataclass(frozen=True)
class Attribution:
    """One method's attribution of one image.

    Attributes:
        method: key of :data:`METHODS`.
        map: ``[C, H, W]`` per pixel and channel, or ``[H, W]`` for Grad-CAM (upsampled).
        target: the class explained.
        delta: Integrated Gradients' convergence error ``|sum(map) - (f(x) - f(baseline))|``
            (the largest over NoiseTunnel's noisy copies); ``None`` for other methods.
        seconds: wall time of the call.
    """

    method: str
    map: np.ndarray
    target: int
    delta: float | None
    seconds: float

    @property
    def heat(self) -> np.ndarray:
        """``[H, W]``: the map summed over channels (signed)."""
        return self.map if self.map.ndim == 2 else self.map.sum(axis=0)


@dataclass(frozen=True)
class AttributionMaps:
    """Each method's map of each image of a batch.

    Attributes:
        methods: ``[M]`` keys of :data:`METHODS`.
        heats: ``[N, M, H, W]`` float32 maps, summed over channels (signed).
        targets: ``[N]`` int64 the class explained for each image.
        deltas: ``[N, M]`` Integrated Gradients' convergence error; NaN for other methods.
        seconds: ``[M]`` wall time of each method over the whole batch.
    """

    methods: tuple[str, ...]
    heats: np.ndarray
    targets: np.ndarray
    deltas: np.ndarray
    seconds: np.ndarray


def make_baseline(images: torch.Tensor, kind: str) -> torch.Tensor:
    """The "absent" version of ``images [N, C, H, W]``: black, white or blurred."""
    if kind == "black":
        return torch.zeros_like(images)
    if kind == "white":
        return torch.ones_like(images)
    if kind == "blur":
        sigma = max(1.0, images.shape[-1] / 16)
        side = min(2 * math.ceil(2 * sigma) + 1, 2 * ((min(images.shape[-2:]) - 1) // 2) + 1)
        return TF.gaussian_blur(images, [side, side], [sigma, sigma])
    raise ValueError(f"Unknown baseline {kind!r}: use one of {', '.join(BASELINES)}.")


def occlusion_patch(
    side: int, window: int | None = None, stride: int | None = None
) -> tuple[int, int]:
    """Occlusion's window and stride on ``side``-pixel images: by default an eighth of the side
    (at least 2 pixels), moved by half a window."""
    window = window or max(2, side // 8)
    return window, stride or max(1, window // 2)


def _token_grid(shape: tuple[int, ...]) -> int | None:
    """Side ``g`` of the patch grid of a token output ``(T, D)``, ``None`` if not tokens."""
    if len(shape) != 2:
        return None
    for tokens in (shape[0] - 1, shape[0]):
        side = math.isqrt(max(tokens, 0))
        if side >= 2 and side * side == tokens:
            return side
    return None


def cam_layers(layers: Sequence[LayerInfo]) -> list[str]:
    """Layers Grad-CAM can read: maps ``[C, h, w]`` with ``h >= 2``, or square token grids."""
    return [
        info.name
        for info in layers
        if (info.spatial and info.output_shape[1] >= 2) or _token_grid(info.output_shape)
    ]


def default_cam_layer(layers: Sequence[LayerInfo]) -> str | None:
    """The usual Grad-CAM layer: for a transformer the first norm of its last block (the two
    norms after it only feed per-token paths); else the last top-level spatial stage
    (``block3``, ``layer4``) or the last spatial layer; ``None`` if there is none."""
    norms = [i.name for i in layers if i.type == "LayerNorm" and _token_grid(i.output_shape)]
    if len(norms) >= 3:
        return norms[-3]
    spatial = [i.name for i in layers if i.spatial and i.output_shape[1] >= 2]
    top = [name for name in spatial if "." not in name]
    return (top or spatial or [None])[-1]


def first_view_options(layers: Sequence[LayerInfo], side: int) -> MethodOptions:
    """The method parameters the Attributions page opens with, for a model with ``layers`` on
    ``side``-pixel images: its widgets' defaults, and the key of the maps ``make assets``
    stores for a shipped run's first view."""
    window, stride = occlusion_patch(side)
    names = cam_layers(layers)
    cam = default_cam_layer(layers) or (names[0] if names else "")
    return MethodOptions(occlusion_window=window, occlusion_stride=stride, cam_layer=cam)


def cam_compatible(layers: Sequence[LayerInfo]) -> Compatibility:
    """Whether Grad-CAM and Guided Grad-CAM apply: they need a layer of maps or tokens."""
    if cam_layers(layers):
        return COMPATIBLE
    return Compatibility(False, "Grad-CAM needs a layer with spatial maps or tokens; none here.")


def supported_methods(layers: Sequence[LayerInfo]) -> tuple[str, ...]:
    """The keys of :data:`METHODS` that apply to a model with ``layers``."""
    cam = bool(cam_compatible(layers))
    return tuple(m for m in METHODS if cam or m not in CAM_METHODS)


def _as_grid(layer_values: torch.Tensor) -> torch.Tensor:
    """A layer's output as maps ``[N, C, h, w]`` (token outputs become a patch grid)."""
    if layer_values.dim() == 4:
        return layer_values
    side = _token_grid(tuple(layer_values.shape[1:]))
    if side is None:
        raise ValueError(
            f"Grad-CAM needs a layer with spatial maps or a square grid of tokens; this one "
            f"outputs {tuple(layer_values.shape[1:])}."
        )
    patches = layer_values[:, -side * side :]
    return patches.transpose(1, 2).reshape(len(patches), -1, side, side)


class _GradCam(GradientAttribution):
    """Grad-CAM at ``layer`` upsampled to the input ``[N, 1, H, W]``, optionally times Guided
    Backprop (Guided Grad-CAM, as captum's ``GuidedGradCam``). Maps layers are captum's
    ``LayerGradCam``; token layers are first read as a patch grid."""

    def __init__(self, model: nn.Module, layer: nn.Module, guided: GuidedBackprop | None):
        super().__init__(model)
        self.layer = layer
        self.guided = guided

    @log_usage()
    def attribute(self, inputs: torch.Tensor, target: Any = None) -> torch.Tensor:
        grads, values = compute_layer_gradients_and_eval(
            self.forward_func, self.layer, inputs, target
        )
        if values[0].dim() == 4:
            cam = LayerGradCam(self.forward_func, self.layer).attribute(
                inputs, target, relu_attributions=True
            )
        else:
            weights = _as_grid(grads[0]).mean(dim=(2, 3), keepdim=True)
            cam = F.relu((weights * _as_grid(values[0])).sum(dim=1, keepdim=True))
        size = tuple(inputs.shape[2:])
        if self.guided is None:
            return LayerAttribution.interpolate(cam, size, interpolate_mode="bilinear")
        guided = self.guided.attribute.__wrapped__(self.guided, inputs, target=target)
        return guided * LayerAttribution.interpolate(cam, size, interpolate_mode="nearest")


class _ChunkedGradientShap(GradientShap):
    """captum's ``GradientShap`` drawing its ``n_samples`` points ``chunk`` at a time, so one
    pass holds at most ``chunk`` copies of the input (captum's runs all in one batch). The
    result is the same average over samples; with ``n_samples <= chunk``, the same numbers."""

    def __init__(self, model: nn.Module, chunk: int):
        super().__init__(model)
        self.chunk = max(1, chunk)

    @log_usage()
    def attribute(  # type: ignore[override]
        self,
        inputs: torch.Tensor,
        baselines: torch.Tensor,
        n_samples: int = 5,
        stdevs: float = 0.0,
        target: Any = None,
    ) -> torch.Tensor:
        sizes = [min(self.chunk, n_samples - s) for s in range(0, n_samples, self.chunk)]
        parts = [
            GradientShap.attribute.__wrapped__(
                self, inputs, baselines, n_samples=k, stdevs=stdevs, target=target
            )
            * k
            for k in sizes
        ]
        return sum(parts) / n_samples


_rewrites: weakref.WeakKeyDictionary[nn.Module, nn.Module | None] = weakref.WeakKeyDictionary()


def _relu_calls(model: nn.Module, input_shape: tuple[int, ...]) -> Counter[str]:
    calls: Counter[str] = Counter()
    relus = {n: m for n, m in model.named_modules() if isinstance(m, nn.ReLU)}
    hooks = {n: (lambda name: lambda *_: calls.update([name]))(n) for n in relus}
    with forward_hooks(model, hooks), torch.no_grad():
        model(torch.zeros(1, *input_shape, device=model_device(model)))
    return calls


def distinct_relus(model: nn.Module, input_shape: tuple[int, ...]) -> nn.Module:
    """``model`` itself if each ReLU module runs once and not in place, else an fx rewrite of it
    with one fresh ``nn.ReLU()`` per ReLU call (sharing every parameter with ``model``).

    Raises:
        ValueError: the model needs the rewrite but ``torch.fx`` cannot trace it.
    """
    if model in _rewrites:
        return _rewrites[model] or model
    calls = _relu_calls(model, input_shape)
    inplace = any(getattr(m, "inplace", False) for m in model.modules() if isinstance(m, nn.ReLU))
    if not inplace and all(c == 1 for c in calls.values()):
        _rewrites[model] = None
        return model
    try:
        graph = torch.fx.symbolic_trace(model)
    except Exception as err:  # fx raises many types for untraceable code
        raise ValueError(
            "DeepLift and Guided Backprop need a separate, not-in-place ReLU module per use; "
            f"this model reuses or modifies its ReLUs and could not be rewritten ({err})."
        ) from err
    for k, node in enumerate(list(graph.graph.nodes)):
        is_relu_module = node.op == "call_module" and isinstance(
            graph.get_submodule(node.target), nn.ReLU
        )
        if is_relu_module or (node.op == "call_function" and node.target in (F.relu, torch.relu)):
            graph.add_submodule(f"relu_call_{k}", nn.ReLU())
            node.op, node.target = "call_module", f"relu_call_{k}"
            node.args, node.kwargs = node.args[:1], {}
    graph.delete_all_unused_submodules()
    graph.recompile()
    for hook in model._forward_pre_hooks.values():  # e.g. an imported run's input normalisation
        graph.register_forward_pre_hook(hook)
    _rewrites[model] = graph.eval()
    return graph


def _explainer(
    model: nn.Module, method: str, options: MethodOptions, input_shape: tuple[int, ...]
) -> tuple[CaptumAttribution, dict[str, Any]]:
    """The captum object for ``method`` and the keyword arguments its ``attribute`` needs
    (besides inputs and target); baselines are filled in by the caller."""
    batch = {"internal_batch_size": options.internal_batch_size}
    if method == "saliency":
        return Saliency(model), {}
    if method == "integrated_gradients":
        return IntegratedGradients(model), {"n_steps": options.ig_steps, **batch}
    if method == "gradient_shap":
        kwargs = {"n_samples": options.shap_samples, "stdevs": options.shap_stdev}
        return _ChunkedGradientShap(model, options.internal_batch_size), kwargs
    if method == "deeplift":
        return DeepLift(distinct_relus(model, input_shape)), {}
    if method == "occlusion":
        c, h, _ = input_shape
        window, stride = occlusion_patch(h, options.occlusion_window, options.occlusion_stride)
        if not 1 <= window <= h or stride < 1:
            raise ValueError(f"The occlusion window must be 1 to {h} pixels and the stride >= 1.")
        kwargs = {
            "sliding_window_shapes": (c, window, window),
            "strides": (c, stride, stride),
            "perturbations_per_eval": options.internal_batch_size,
        }
        return Occlusion(model), kwargs
    if method == "guided_backprop":
        return GuidedBackprop(distinct_relus(model, input_shape)), {}
    if method in CAM_METHODS:
        name = options.cam_layer or default_cam_layer(list_layers(model, input_shape))
        if name is None:
            raise ValueError(cam_compatible([]).reason)
        try:
            layer = get_module(model, name)
        except KeyError as err:
            raise ValueError(str(err.args[0])) from err
        guided = (
            GuidedBackprop(distinct_relus(model, input_shape)) if method != "grad_cam" else None
        )
        return _GradCam(model, layer, guided), {}
    raise ValueError(f"Unknown attribution method {method!r}: use one of {', '.join(METHODS)}.")


def attribute(
    model: nn.Module, image: np.ndarray | torch.Tensor, method: str, options: MethodOptions
) -> Attribution:
    """Attributes the model's score for one image to its pixels with a captum method.

    Args:
        model: a classifier returning logits ``[N, K]``, in eval mode.
        image: ``[C, H, W]`` float input, as the model takes it.
        method: a key of :data:`METHODS`.
        options: method parameters; :class:`MethodOptions`.

    Returns:
        An :class:`Attribution` (``map`` is ``[C, H, W]``, ``[H, W]`` for Grad-CAM).

    Raises:
        ValueError: unknown method, baseline or smoothing, a target outside the classes, or a
            layer Grad-CAM cannot use.
    """
    if options.smoothing not in SMOOTHING:
        raise ValueError(f"Unknown smoothing {options.smoothing!r}: use one of {SMOOTHING}.")
    device = model_device(model)
    x = torch.as_tensor(image, dtype=torch.float32).to(device)[None]
    start = time.perf_counter()
    with model_lock(model), ExitStack() as stack:
        with torch.no_grad():
            logits = model(x)
        target = int(logits.argmax(dim=1)) if options.target is None else options.target
        if not 0 <= target < logits.shape[1]:
            raise ValueError(f"Class {target} does not exist: the model has {logits.shape[1]}.")
        explainer, kwargs = _explainer(model, method, options, tuple(x.shape[1:]))
        if method in ("integrated_gradients", "gradient_shap", "deeplift", "occlusion"):
            kwargs["baselines"] = make_baseline(x, options.baseline)
        if method == "integrated_gradients":
            kwargs["return_convergence_delta"] = True
        stack.enter_context(
            torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
        )
        torch.manual_seed(options.seed)
        stack.callback(np.random.set_state, np.random.get_state())
        np.random.seed(options.seed)  # captum draws GradientSHAP's path points with numpy
        if options.smoothing != "none":
            kwargs.update(
                nt_type=options.smoothing,
                nt_samples=options.smooth_samples,
                nt_samples_batch_size=options.internal_batch_size,
                stdevs=options.smooth_stdev,
            )
            explainer = NoiseTunnel(explainer)
        result = explainer.attribute(x, target=target, **kwargs)
    attr, delta = result if method == "integrated_gradients" else (result, None)
    values = attr.detach().float().cpu().numpy()[0]
    return Attribution(
        method=method,
        map=values[0] if method == "grad_cam" else values,
        target=target,
        delta=None if delta is None else float(delta.detach().abs().max()),
        seconds=time.perf_counter() - start,
    )


def resolve_methods(model: nn.Module, batch: Batch, methods: tuple[str, ...]) -> tuple[str, ...]:
    """``methods``, or for ``()`` every method that applies to ``model``."""
    return methods or supported_methods(list_layers(model, tuple(batch.images.shape[1:])))


@register("attributions.maps", "attributions", "Attribution maps", AttributionOptions)
def attribution_maps(
    model: nn.Module,
    batch: Batch,
    options: AttributionOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> AttributionMaps:
    """Each method's attribution of each image of ``batch`` (:func:`attribute`, summed over
    channels); ``progress(done, N * M)`` after each map.

    Raises:
        ValueError: as :func:`attribute` (the first method or image that fails).
    """
    methods = resolve_methods(model, batch, options.methods)
    n, m = len(batch), len(methods)
    heats = np.zeros((n, m, *batch.images.shape[2:]), np.float32)
    targets, deltas, seconds = np.zeros(n, np.int64), np.full((n, m), np.nan), np.zeros(m)
    for j, method in enumerate(methods):
        for i, image in enumerate(batch.images):
            result = attribute(model, image, method, options)
            heats[i, j], targets[i] = result.heat, result.target
            deltas[i, j] = np.nan if result.delta is None else result.delta
            seconds[j] += result.seconds
            if progress is not None:
                progress(j * n + i + 1, n * m)
    return AttributionMaps(methods, heats, targets, deltas, seconds)
