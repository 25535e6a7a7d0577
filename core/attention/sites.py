"""Where a model's attention layers are, and how to read their probabilities in one pass.

Two kinds of attention layer are read. Our :class:`core.models.SmallViT` passes its
probabilities through an identity module (``blocks.{i}.attn.attn_probs``, the house HookPoint
pattern), so a forward hook sees them. Torchvision's ``VisionTransformer`` calls
``nn.MultiheadAttention`` with ``need_weights=False``: its hooks see no weights, so a hook on the
attention module recomputes ``softmax(q k^T / sqrt(d))`` from the module's own input and
``in_proj`` weights, without changing the forward pass.

What can go wrong: the recomputation assumes what torchvision does (positional
``(query, key, value)`` arguments, no attention mask, no ``bias_k``/``add_zero_attn``); a module
configured otherwise raises :class:`ValueError` rather than giving wrong weights. A model with
no attention layer raises :class:`NoAttentionError`; :func:`is_compatible` says so beforehand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.activations import CLS_SUFFIX, LayerInfo, list_layers
from core.analysis import COMPATIBLE, Compatibility
from core.device import model_device
from core.hooks import forward_hooks
from core.models.zoo import build_model

PROBS_MODULE = "attn_probs"
"""Name of the identity module through which a built-in ViT passes its attention probabilities."""

NO_ATTENTION = (
    "has no attention layers: attention maps need a vision transformer "
    "(the built-in `vit` or torchvision's `vit_*`)"
)
"""Why an analysis of this family does not apply, after the model's name."""


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


def site_kind(name: str, module_type: str) -> str | None:
    """``"probs"``, ``"mha"`` or ``None`` (not an attention layer) for a module's name and type."""
    if name.rsplit(".", 1)[-1] == PROBS_MODULE:
        return "probs"
    if module_type == nn.MultiheadAttention.__name__:
        return "mha"
    return None


def is_compatible(layers: Sequence[LayerInfo]) -> Compatibility:
    """Whether a model with ``layers`` (from ``list_layers``) has attention layers to read."""
    if any(site_kind(layer.name, layer.type) for layer in layers):
        return COMPATIBLE
    return Compatibility(False, f"This model {NO_ATTENTION}.")


def architecture_compatibility(arch: str, input_shape: tuple[int, int, int]) -> Compatibility:
    """:func:`is_compatible` for ``arch`` built for ``input_shape``, without its weights.

    The model is built and listed on PyTorch's meta device, so this is cheap even for large
    architectures. An architecture that cannot be built is not compatible.
    """
    try:
        with torch.device("meta"):
            return is_compatible(list_layers(build_model(arch, input_shape, 2), input_shape))
    except (ValueError, RuntimeError) as err:
        return Compatibility(False, f"{arch} cannot be built for {input_shape}: {err}")


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
        kind = site_kind(name, type(module).__name__)
        if kind is not None:
            sites.append(AttentionSite(name, _block_of(model, name), kind))
    return sites


def has_attention(model: nn.Module) -> bool:
    """The model has attention layers this module can read."""
    return bool(attention_sites(model))


def require_sites(model: nn.Module) -> list[AttentionSite]:
    """:func:`attention_sites`, or :class:`NoAttentionError` when there are none."""
    sites = attention_sites(model)
    if not sites:
        raise NoAttentionError(f"{type(model).__name__} {NO_ATTENTION}.")
    return sites


def cls_layer_name(block: str) -> str:
    """The pseudo-layer name of the CLS token at the output of ``block`` (see ``capture``)."""
    return block + CLS_SUFFIX


def cls_layers(model: nn.Module) -> list[str]:
    """``"<block> (CLS)"`` pseudo-layers of a ViT, shallow to deep (empty for other models)."""
    blocks = dict.fromkeys(site.block for site in attention_sites(model))
    return [cls_layer_name(block) for block in blocks]


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


def forward_attention(
    model: nn.Module, images: torch.Tensor | np.ndarray
) -> tuple[list[AttentionSite], np.ndarray, np.ndarray]:
    """Attention probabilities of every head of every layer, and the logits, in one pass.

    Args:
        model: a vision transformer (see :func:`attention_sites`).
        images: ``[N, C, H, W]`` inputs.

    Returns:
        The attention sites, ``[N, layers, heads, T, T]`` float32 probabilities (row ``q`` of
        a head is where query token ``q`` looks, and sums to 1), and ``[N, K]`` logits.

    Raises:
        NoAttentionError: the model has no attention layer.
        ValueError: the input is not a batch of images, or an attention layer is not run.
    """
    sites = require_sites(model)
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
    return sites, probs, logits.detach().float().cpu().numpy()
