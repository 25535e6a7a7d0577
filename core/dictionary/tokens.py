"""A layer's output as token vectors for an SAE, and the way back into the forward pass.

An SAE reads vectors of one width ``d``. A spatial layer ``[N, C, H, W]`` gives ``N*H*W``
tokens of size ``C`` (every position is one token); a token layer ``[N, T, D]`` gives its patch
tokens only: CLS and register tokens are *extra* tokens, left out of training and passed through
unchanged when a reconstruction is spliced in (mixing them in would let one odd token type eat
features); a flat layer ``[N, D]`` gives ``N`` tokens.

What can go wrong: a layer with another output rank (``ValueError``), a token layer whose patch
grid cannot be inferred (then every token is a patch, and :class:`TokenSite` says so).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.activations import LayerInfo, first_tensor, layer_output, list_layers
from core.device import model_device
from core.hooks import forward_hooks, split_call


@dataclass(frozen=True)
class TokenSite:
    """How one layer's output splits into tokens.

    Attributes:
        layer: the layer's name.
        kind: ``spatial`` (``[C, H, W]``), ``tokens`` (``[T, D]``) or ``flat`` (``[D]``).
        d_in: width of one token.
        map_shape: ``(rows, cols)`` the tokens of one image form (``(1, 1)`` for flat layers).
        patch_start: index of the first patch token of a token layer (0 otherwise).
        extra: token indices left out (CLS, registers) of a token layer.
    """

    layer: str
    kind: str
    d_in: int
    map_shape: tuple[int, int]
    patch_start: int = 0
    extra: tuple[int, ...] = ()

    @property
    def per_image(self) -> int:
        """Tokens per image."""
        return self.map_shape[0] * self.map_shape[1]

    def describe(self) -> str:
        """One line for a person."""
        if self.kind == "spatial":
            return (
                f"each of the {self.map_shape[0]}×{self.map_shape[1]} positions of an image is "
                f"one token of {self.d_in} channels"
            )
        if self.kind == "tokens":
            extra = f"; {len(self.extra)} extra token(s) (CLS, registers) left out" * bool(
                self.extra
            )
            return f"{self.per_image} patch tokens of {self.d_in} per image{extra}"
        return f"one vector of {self.d_in} units per image"


def default_layer(layers: Sequence[LayerInfo]) -> str:
    """The middle one of the model's top-level blocks, the output head left out."""
    top = [la for la in layers if "." not in la.name and len(la.output_shape) in (1, 2, 3)]
    candidates = top[:-1] or top or list(layers)
    return candidates[len(candidates) // 2].name


def token_site(model: nn.Module, input_shape: Sequence[int], layer: str) -> TokenSite:
    """How ``layer``'s output splits into tokens (``""``: :func:`default_layer`); remembered per
    model, since it costs a hooked pass over every module and every feature page asks.

    Raises:
        ValueError: an unknown layer or an output of rank other than 1, 2 or 3.
    """
    known = _sites.setdefault(model, {})
    key = (tuple(int(d) for d in input_shape), layer)
    if key not in known:
        known[key] = _token_site(model, key[0], layer)
    return known[key]


_sites: weakref.WeakKeyDictionary[nn.Module, dict[tuple, TokenSite]] = weakref.WeakKeyDictionary()


def _token_site(model: nn.Module, input_shape: Sequence[int], layer: str) -> TokenSite:
    layers = list_layers(model, input_shape)
    layer = layer or default_layer(layers)
    info = next((la for la in layers if la.name == layer), None)
    if info is None:
        raise ValueError(f"The model has no layer {layer!r}.")
    shape = info.output_shape
    if len(shape) == 3:
        return TokenSite(layer, "spatial", shape[0], (shape[1], shape[2]))
    if len(shape) == 1:
        return TokenSite(layer, "flat", shape[0], (1, 1))
    if len(shape) != 2:
        raise ValueError(f"{layer} outputs {shape}: an SAE needs maps, tokens or a vector.")
    from core.attention.layout import token_layout

    n_tokens, width = shape
    try:
        layout = token_layout(model, n_tokens, (int(input_shape[1]), int(input_shape[2])))
    except ValueError:
        return TokenSite(layer, "tokens", width, (1, n_tokens))
    patches = range(layout.patches.start, layout.patches.stop)
    extra = tuple(i for i in range(n_tokens) if i not in patches)
    return TokenSite(layer, "tokens", width, layout.grid, layout.patch_start, extra)


def to_tokens(output: torch.Tensor, site: TokenSite) -> torch.Tensor:
    """A batch's layer output -> ``[N * per_image, d_in]`` tokens, image-major, row-major."""
    n = output.shape[0]
    if site.kind == "spatial":
        return output.permute(0, 2, 3, 1).reshape(-1, site.d_in)
    if site.kind == "tokens":
        start = site.patch_start
        return output[:, start : start + site.per_image].reshape(-1, site.d_in)
    return output.reshape(n, site.d_in)


def from_tokens(tokens: torch.Tensor, output: torch.Tensor, site: TokenSite) -> torch.Tensor:
    """``[N * per_image, d_in]`` tokens back into ``output``'s shape (extra tokens kept)."""
    n = output.shape[0]
    if site.kind == "spatial":
        h, w = site.map_shape
        return tokens.reshape(n, h, w, site.d_in).permute(0, 3, 1, 2).contiguous()
    if site.kind == "tokens":
        out = output.clone()
        start = site.patch_start
        out[:, start : start + site.per_image] = tokens.reshape(n, site.per_image, site.d_in)
        return out
    return tokens.reshape(output.shape)


def maps_of(values: np.ndarray, site: TokenSite) -> np.ndarray:
    """``[N * per_image, F]`` per-token values -> ``[N, F, rows, cols]`` maps."""
    rows, cols = site.map_shape
    return values.reshape(-1, rows, cols, values.shape[-1]).transpose(0, 3, 1, 2)


@contextmanager
def splice(
    model: nn.Module, site: TokenSite, rewrite: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[None]:
    """Inside the block, the layer's tokens are replaced by ``rewrite(tokens)`` in every pass.

    The hook is removed on exit, also after an error (:func:`core.hooks.forward_hooks`).
    """
    module, call = split_call(site.layer)
    calls = 0

    def hook(_module: nn.Module, _inputs: object, output: object) -> torch.Tensor | None:
        nonlocal calls
        tensor = first_tensor(output)
        if tensor is None:
            return None
        calls += 1
        if calls != call:
            return None
        tokens = to_tokens(tensor, site)
        return from_tokens(rewrite(tokens).to(tensor.dtype), tensor, site)

    def reset(_module: nn.Module, _inputs: object) -> None:
        nonlocal calls
        calls = 0

    with forward_hooks(model, {module: hook}):
        handle = model.register_forward_pre_hook(reset)
        try:
            yield
        finally:
            handle.remove()


def stream_tokens(
    model: nn.Module, images: np.ndarray, site: TokenSite, batch_size: int = 256
) -> Iterator[tuple[int, torch.Tensor]]:
    """The model's tokens at ``site`` for ``[N, C, H, W]`` images, one image batch at a time.

    Yields:
        ``(start, tokens)``: the batch's first image index and its ``[b * per_image, d_in]``
        float32 tokens on the model's device.
    """
    device = model_device(model)
    for start in range(0, len(images), batch_size):
        x = torch.as_tensor(images[start : start + batch_size]).to(device, torch.float32)
        with torch.no_grad():
            yield start, to_tokens(layer_output(model, x, site.layer).float(), site)
