"""Attention of vision transformers: where each head of each layer looks, and what it adds up to.

Two kinds of attention layer are read. Our :class:`core.models.SmallViT` passes its
probabilities through an identity module (``blocks.{i}.attn.attn_probs``), so a forward hook
sees them. Torchvision's ``VisionTransformer`` calls ``nn.MultiheadAttention`` with
``need_weights=False``: its hooks see no weights, so a hook on the attention module recomputes
``softmax(q k^T / sqrt(d))`` from the module's own input and ``in_proj`` weights, without
changing the forward pass. That recomputation assumes what torchvision does: positional
``(query, key, value)`` arguments, no attention mask, no ``bias_k``/``add_zero_attn``; a module
configured otherwise raises :class:`ValueError` rather than giving wrong weights.

Tokens are laid out as ``[extra tokens (CLS, registers), patches row-major]``; a token count
that is not ``1 + g*g`` is handled by :func:`token_layout`, which takes the smallest run of
leading extra tokens that leaves a patch grid of the image's aspect ratio.

On top of the captured probabilities ``[N, layers, heads, T, T]``: attention rollout (Abnar &
Zuidema 2020), and per-head statistics over many samples (mean attention distance in pixels as
in the ViT paper, Dosovitskiy et al. 2021, and entropy), computed batch by batch so memory is
bounded by one batch of attention maps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.activations import CLS_SUFFIX, Capture, capture_dataset
from core.device import model_device
from core.hooks import forward_hooks
from core.models.zoo import build_model

PROBS_MODULE = "attn_probs"
"""Name of the identity module through which a built-in ViT passes its attention probabilities."""

BATCH_BYTES = 256 * 2**20
"""Attention maps kept per batch when statistics run over many samples."""


class NoAttentionError(ValueError):
    """A model in which no attention layer could be found."""


@dataclass(frozen=True)
class AttentionSite:
    """One attention layer of a model.

    Attributes:
        name: the hooked module's ``named_modules()`` name.
        block: the transformer block that holds it (its output carries the tokens).
        kind: ``probs`` (the module outputs probabilities) or ``mha`` (an
            ``nn.MultiheadAttention`` whose probabilities are recomputed from its input).
    """

    name: str
    block: str
    kind: str


@dataclass(frozen=True)
class TokenLayout:
    """Which tokens are image patches, and where each patch lies in the input.

    Attributes:
        n_tokens: tokens per sample ``T``.
        patch_start: index of the first patch token; tokens before it (CLS, registers) and
            after the grid are extra tokens.
        grid: ``(rows, cols)`` of the patch grid; patches are row-major.
        patch: ``(height, width)`` of one patch in pixels.
        image: ``(H, W)`` of the input.
    """

    n_tokens: int
    patch_start: int
    grid: tuple[int, int]
    patch: tuple[int, int]
    image: tuple[int, int]

    @property
    def n_patches(self) -> int:
        """Patch tokens ``P = rows * cols``."""
        return self.grid[0] * self.grid[1]

    @property
    def patches(self) -> slice:
        """The patch tokens' positions in the token axis."""
        return slice(self.patch_start, self.patch_start + self.n_patches)

    @property
    def has_cls(self) -> bool:
        """Token 0 is an extra token (taken to be CLS)."""
        return self.patch_start > 0

    def token_label(self, token: int) -> str:
        """A reader's name for a token: ``CLS``, ``register 2``, ``patch (row 1, col 3)``."""
        if self.patch_start <= token < self.patch_start + self.n_patches:
            row, col = divmod(token - self.patch_start, self.grid[1])
            return f"patch (row {row}, col {col})"
        if token == 0:
            return "CLS"
        extra = token if token < self.patch_start else token - self.n_patches
        return f"register {extra}"

    def patch_token(self, row: int, col: int) -> int:
        """The token index of the patch at grid ``(row, col)``."""
        return self.patch_start + row * self.grid[1] + col

    def patch_centres(self) -> np.ndarray:
        """``[P, 2]`` pixel coordinates ``(y, x)`` of each patch's centre, row-major."""
        rows, cols = np.meshgrid(np.arange(self.grid[0]), np.arange(self.grid[1]), indexing="ij")
        centres = np.stack([(rows + 0.5) * self.patch[0], (cols + 0.5) * self.patch[1]], -1)
        return centres.reshape(-1, 2).astype(np.float64)

    def to_pixels(self, values: np.ndarray) -> np.ndarray:
        """Per-token values ``[..., T]`` -> per-pixel maps ``[..., H, W]`` of the patch tokens.

        Each patch's value fills its patch; pixels no patch covers are NaN.
        """
        grid = values[..., self.patches].reshape(*values.shape[:-1], *self.grid)
        ph, pw = self.patch
        up = np.repeat(np.repeat(grid, ph, axis=-2), pw, axis=-1).astype(np.float32)
        out = np.full((*values.shape[:-1], *self.image), np.nan, np.float32)
        h, w = min(up.shape[-2], self.image[0]), min(up.shape[-1], self.image[1])
        out[..., :h, :w] = up[..., :h, :w]
        return out


@dataclass(frozen=True)
class AttentionMaps:
    """Attention probabilities of every head of every layer for a batch.

    Attributes:
        probs: ``[N, layers, heads, T, T]`` float32; row ``q`` of a head is where query token
            ``q`` looks, and sums to 1.
        layers: the attention modules' names, one per layer.
        blocks: the transformer blocks holding them.
        layout: which tokens are patches.
        logits: ``[N, num_classes]`` outputs of the same pass.
    """

    probs: np.ndarray
    layers: tuple[str, ...]
    blocks: tuple[str, ...]
    layout: TokenLayout
    logits: np.ndarray


@dataclass(frozen=True)
class HeadStatistics:
    """Per-head statistics over a set of samples, averaged over the patch queries of each.

    Attributes:
        distance: ``[N, layers, heads]`` mean attention distance in pixels: the distance from
            a query patch's centre to the key patches' centres, weighted by the attention on
            patches (renormalised to sum to 1 over patches).
        entropy: ``[N, layers, heads]`` entropy in bits of the attention rows (over all
            tokens); 0 is one token, ``log2(T)`` is uniform.
        extra_share: ``[N, layers, heads]`` attention mass on extra tokens (CLS, registers).
        layers: the attention modules' names.
        layout: the token layout.
        seconds: wall-clock time the computation took.
    """

    distance: np.ndarray
    entropy: np.ndarray
    extra_share: np.ndarray
    layers: tuple[str, ...]
    layout: TokenLayout
    seconds: float

    @property
    def max_entropy(self) -> float:
        """Entropy of uniform attention over all tokens, in bits."""
        return math.log2(self.layout.n_tokens)

    @property
    def uniform_distance(self) -> float:
        """Mean attention distance of a head that attends to every patch equally, in pixels."""
        uniform = np.full((self.layout.n_tokens,) * 2, 1 / self.layout.n_tokens)
        return float(mean_attention_distance(uniform, self.layout))


def _block_of(model: nn.Module, name: str) -> str:
    """The nearest ancestor of ``name`` that is an element of a Sequential or ModuleList."""
    modules = dict(model.named_modules())
    parts = name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        parent = ".".join(parts[: end - 1])
        if isinstance(modules[parent], nn.Sequential | nn.ModuleList):
            return ".".join(parts[:end])
    return ".".join(parts[:-1])


def attention_sites(model: nn.Module) -> list[AttentionSite]:
    """The model's attention layers, in forward order (``named_modules()`` order).

    Returns an empty list for a model without attention.
    """
    sites = []
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] == PROBS_MODULE:
            sites.append(AttentionSite(name, _block_of(model, name), "probs"))
        elif isinstance(module, nn.MultiheadAttention):
            sites.append(AttentionSite(name, _block_of(model, name), "mha"))
    return sites


def has_attention(model: nn.Module) -> bool:
    """The model has attention layers this module can read."""
    return bool(attention_sites(model))


def _require_sites(model: nn.Module) -> list[AttentionSite]:
    sites = attention_sites(model)
    if not sites:
        raise NoAttentionError(
            f"{type(model).__name__} has no attention layers: attention maps need a vision "
            "transformer (the built-in vit, or torchvision's vit_*)."
        )
    return sites


def mha_probabilities(
    mha: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor
) -> torch.Tensor:
    """What ``mha(query, key, value, need_weights=True, average_attn_weights=False)`` would return.

    Args:
        mha: the attention module (no attention mask, ``bias_k`` or ``add_zero_attn``).
        query: ``[N, Tq, E]`` (``[Tq, N, E]`` unless ``mha.batch_first``).
        key: ``[N, Tk, E]`` likewise.

    Returns:
        ``[N, heads, Tq, Tk]`` probabilities.
    """
    if mha.bias_k is not None or mha.add_zero_attn:
        raise ValueError(
            "This MultiheadAttention adds bias_k or zero attention; its weights are not recomputed."
        )
    if not mha.batch_first:
        query, key = query.transpose(0, 1), key.transpose(0, 1)
    e, heads = mha.embed_dim, mha.num_heads
    if mha._qkv_same_embed_dim:
        w_q, w_k = mha.in_proj_weight[:e], mha.in_proj_weight[e : 2 * e]
    else:
        w_q, w_k = mha.q_proj_weight, mha.k_proj_weight
    b_q = b_k = None
    if mha.in_proj_bias is not None:
        b_q, b_k = mha.in_proj_bias[:e], mha.in_proj_bias[e : 2 * e]
    n, t_q, t_k = query.shape[0], query.shape[1], key.shape[1]
    q = F.linear(query, w_q, b_q).view(n, t_q, heads, mha.head_dim).transpose(1, 2)
    k = F.linear(key, w_k, b_k).view(n, t_k, heads, mha.head_dim).transpose(1, 2)
    return (q @ k.transpose(-2, -1) * mha.head_dim**-0.5).softmax(dim=-1)


def _probs_hook(site: AttentionSite, out: dict[str, torch.Tensor]) -> Callable[..., None]:
    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if site.kind == "probs":
            out[site.name] = output.detach()
            return
        if len(inputs) < 2:
            raise ValueError(
                f"{site.name} was called with keyword arguments; its attention cannot be read."
            )
        out[site.name] = mha_probabilities(module, inputs[0], inputs[1]).detach()

    return hook


def token_layout(model: nn.Module, n_tokens: int, image: tuple[int, int]) -> TokenLayout:
    """Where the patches are among ``n_tokens`` tokens for an ``image = (H, W)`` input.

    The patch grid is the one with the image's aspect ratio left by the fewest leading extra
    tokens (CLS and any registers). The patch size is the model's (``patch`` or
    ``patch_size`` attribute) when it has one, else ``H // rows``.

    Raises:
        ValueError: no patch grid fits the token count.
    """
    h, w = image
    for start in range(n_tokens):
        n = n_tokens - start
        rows = round(math.sqrt(n * h / w))
        if rows > 0 and n % rows == 0 and (n // rows) * h == rows * w:
            size = getattr(model, "patch", None) or getattr(model, "patch_size", None)
            patch = (
                (int(size), int(size)) if isinstance(size, int) else (h // rows, w // (n // rows))
            )
            return TokenLayout(n_tokens, start, (rows, n // rows), patch, (h, w))
    raise ValueError(
        f"{n_tokens} tokens do not form a patch grid for a {h}x{w} input with extra tokens first."
    )


def capture_attention(model: nn.Module, images: torch.Tensor | np.ndarray) -> AttentionMaps:
    """Attention probabilities of every head of every layer for a batch, in one forward pass.

    Args:
        model: a vision transformer (see :func:`attention_sites`).
        images: ``[N, C, H, W]`` inputs in [0, 1].

    Returns:
        :class:`AttentionMaps` with ``probs`` ``[N, layers, heads, T, T]``.

    Raises:
        NoAttentionError: the model has no attention layer.
        ValueError: the input is not a batch of images, or an attention layer is not run.
    """
    sites = _require_sites(model)
    x = torch.as_tensor(images)
    if x.ndim != 4:
        raise ValueError(f"Expected a batch of images [N, C, H, W], got shape {tuple(x.shape)}.")
    x = x.to(model_device(model), torch.float32)
    seen: dict[str, torch.Tensor] = {}
    hooks = {s.name: _probs_hook(s, seen) for s in sites}
    with forward_hooks(model, hooks), torch.no_grad():
        logits = model(x)
    missing = [s.name for s in sites if s.name not in seen]
    if missing:
        raise ValueError(f"These attention layers did not run: {', '.join(missing)}.")
    probs = torch.stack([seen[s.name] for s in sites], dim=1).float().cpu().numpy()
    layout = token_layout(model, probs.shape[-1], (x.shape[2], x.shape[3]))
    return AttentionMaps(
        probs=probs,
        layers=tuple(s.name for s in sites),
        blocks=tuple(s.block for s in sites),
        layout=layout,
        logits=logits.detach().float().cpu().numpy(),
    )


def attention_rollout(probs: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020) up to each layer.

    Each layer's heads are averaged, the residual connection is modelled as
    ``residual * I + (1 - residual) * A``, rows are renormalised, and the layers are multiplied
    from the first: ``R_l = A_l R_{l-1}``.

    Args:
        probs: ``[..., layers, heads, T, T]`` attention probabilities.
        residual: weight of the identity.

    Returns:
        ``[..., layers, T, T]``: row ``q`` of layer ``l`` is how much token ``q`` after block
        ``l`` draws on each input token.
    """
    mixed = probs.astype(np.float64).mean(axis=-3)
    eye = np.eye(probs.shape[-1])
    mixed = residual * eye + (1 - residual) * mixed
    mixed /= mixed.sum(axis=-1, keepdims=True)
    out = np.empty_like(mixed)
    rolled = np.broadcast_to(eye, mixed.shape[:-3] + eye.shape)
    for layer in range(mixed.shape[-3]):
        rolled = mixed[..., layer, :, :] @ rolled
        out[..., layer, :, :] = rolled
    return out.astype(np.float32)


def mean_attention_distance(probs: np.ndarray, layout: TokenLayout) -> np.ndarray:
    """Mean attention distance in pixels per head (Dosovitskiy et al. 2021, fig. 7).

    For each patch query, the attention on patch keys is renormalised to sum to 1 and weights
    the distance between patch centres; the result is averaged over patch queries. Attention on
    extra tokens (see ``HeadStatistics.extra_share``) is left out.

    Args:
        probs: ``[..., T, T]`` attention probabilities.
        layout: the token layout.

    Returns:
        ``[...]`` distances in pixels.
    """
    centres = layout.patch_centres()
    distance = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    on_patches = probs[..., layout.patches, layout.patches]
    total = np.maximum(on_patches.sum(axis=-1), 1e-12)
    per_query = (on_patches * distance.astype(probs.dtype)).sum(axis=-1) / total
    return per_query.mean(axis=-1)


def attention_entropy(probs: np.ndarray, layout: TokenLayout) -> np.ndarray:
    """Entropy in bits of the attention rows of patch queries, averaged over them.

    Args:
        probs: ``[..., T, T]`` attention probabilities.
        layout: the token layout.

    Returns:
        ``[...]`` entropies in bits.
    """
    rows = probs[..., layout.patches, :]
    return -(rows * np.log2(np.maximum(rows, 1e-30))).sum(axis=-1).mean(axis=-1)


def _extra_share(probs: np.ndarray, layout: TokenLayout) -> np.ndarray:
    rows = probs[..., layout.patches, :]
    return (1 - rows[..., layout.patches].sum(axis=-1)).mean(axis=-1)


def head_statistics(
    model: nn.Module,
    images: torch.Tensor | np.ndarray,
    *,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> HeadStatistics:
    """Mean attention distance, entropy and share on extra tokens of every head, per sample.

    Args:
        model: a vision transformer.
        images: ``[N, C, H, W]`` inputs (e.g. a validation split).
        batch_size: samples per forward pass (default: as many as fit :data:`BATCH_BYTES` of
            attention maps).
        progress: called as ``progress(done, total)`` after each batch.

    Raises:
        NoAttentionError: the model has no attention layer.
        ValueError: no images.
    """
    n = len(images)
    if n == 0:
        raise ValueError("No images to compute head statistics over.")
    started = time.perf_counter()
    first = capture_attention(model, images[:1])
    if batch_size is None:
        batch_size = max(1, min(n, BATCH_BYTES // first.probs.nbytes))
    parts: list[tuple[np.ndarray, ...]] = []
    for start in range(0, n, batch_size):
        maps = capture_attention(model, images[start : start + batch_size])
        layout = maps.layout
        parts.append(
            (
                mean_attention_distance(maps.probs, layout),
                attention_entropy(maps.probs, layout),
                _extra_share(maps.probs, layout),
            )
        )
        if progress is not None:
            progress(min(start + batch_size, n), n)
    distance, entropy, extra = (
        np.concatenate(p).astype(np.float32) for p in zip(*parts, strict=True)
    )
    return HeadStatistics(
        distance=distance,
        entropy=entropy,
        extra_share=extra,
        layers=first.layers,
        layout=first.layout,
        seconds=time.perf_counter() - started,
    )


def cls_layer_name(block: str) -> str:
    """The pseudo-layer name of the CLS token at the output of ``block`` (see ``capture``)."""
    return block + CLS_SUFFIX


def cls_tokens(
    model: nn.Module,
    images: torch.Tensor | np.ndarray,
    *,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> Capture:
    """The CLS token at the output of every transformer block, as one "layer" per block.

    Only token 0 is kept, so memory is ``N * dim`` per block whatever the token count.

    Args:
        model: a vision transformer whose token 0 is a CLS token.
        images: ``[N, C, H, W]`` inputs.
        batch_size: samples per forward pass.
        progress: called as ``progress(done, total)`` after each batch.

    Returns:
        A :class:`core.activations.Capture` whose arrays map ``cls_layer_name(block)`` to
        ``[N, dim]`` float32, in block order, and the logits ``[N, num_classes]``.

    Raises:
        NoAttentionError: the model has no attention layer.
        ValueError: the model's tokens have no CLS token, or there are no images.
    """
    blocks = list(dict.fromkeys(s.block for s in _require_sites(model)))
    n = len(images)
    if n == 0:
        raise ValueError("No images to take CLS tokens of.")
    first = capture_attention(model, images[:1])
    if not first.layout.has_cls:
        raise ValueError("This model's tokens start with a patch: it has no CLS token.")
    names = [cls_layer_name(block) for block in blocks]
    return capture_dataset(model, images, names, batch_size=batch_size, progress=progress)


def query_attention(maps: AttentionMaps, query: int, sample: int = 0) -> np.ndarray:
    """Where query token ``query`` looks, per layer and head, as pixel maps.

    Returns:
        ``[layers, heads, H, W]`` attention on each patch, spread over its pixels (NaN where no
        patch covers the image).
    """
    return maps.layout.to_pixels(maps.probs[sample, :, :, query, :])


def head_table(stats: HeadStatistics) -> list[dict[str, Any]]:
    """One row per layer and head: the statistics averaged over samples (for CSV export)."""
    rows = []
    for layer, name in enumerate(stats.layers):
        for head in range(stats.distance.shape[2]):
            rows.append(
                {
                    "layer": layer,
                    "module": name,
                    "head": head,
                    "mean_distance_px": float(stats.distance[:, layer, head].mean()),
                    "entropy_bits": float(stats.entropy[:, layer, head].mean()),
                    "extra_token_share": float(stats.extra_share[:, layer, head].mean()),
                }
            )
    return rows


def architecture_has_attention(arch: str, input_shape: tuple[int, int, int]) -> bool:
    """Whether ``arch`` built for ``input_shape`` has attention, without allocating its weights.

    The model is built on PyTorch's meta device, so this is cheap even for large architectures.
    An architecture that cannot be built has no attention.
    """
    try:
        with torch.device("meta"):
            return has_attention(build_model(arch, input_shape, 2))
    except (ValueError, RuntimeError):
        return False
