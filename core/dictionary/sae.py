"""The sparse autoencoder: an encoder, a sparsity rule, and a decoder of unit-norm directions.

``f = act((x * scale - b_dec) @ W_enc + b_enc)`` and ``x_hat = (f @ W_dec + b_dec) / scale``:
``scale`` brings the layer's tokens to a mean norm of ``sqrt(d_in)`` (so one learning rate and
one ``k`` fit every layer). The sparsity rules (:data:`ARCHITECTURES`):

- ``batchtopk`` (Bussmann et al. 2024): while training, the ``k * B`` largest pre-activations of
  a batch of ``B`` tokens are kept, however they fall on rows; at inference a single threshold
  (the running mean of the smallest kept value) replaces the batch, so one token's code does not
  depend on the others. Stored as SAELens's ``jumprelu``.
- ``topk`` (Gao et al. 2024): exactly ``k`` per token.
- ``relu``: a ReLU with an L1 penalty (the 2023 recipe), kept for teaching.

What can go wrong: a ``k`` larger than ``d_sae`` (clamped), a token of all zeros (its code may be
empty), weights from another layer's width (``ValueError`` on load).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

ARCHITECTURES = ("batchtopk", "topk", "relu")
"""Sparsity rules; the first is the default."""


def topk_mask(pre: torch.Tensor, k: int) -> torch.Tensor:
    """``[B, F]`` pre-activations -> their ReLU with all but each row's ``k`` largest set to 0."""
    k = min(k, pre.shape[-1])
    values, indices = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, indices, values.relu())


def batch_topk_mask(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keeps the ``k * B`` largest of a ``[B, F]`` batch's pre-activations (ReLU'd), anywhere.

    Returns:
        The sparse codes ``[B, F]`` and the smallest kept value (a scalar tensor).
    """
    flat = pre.flatten()
    keep = min(k * pre.shape[0], flat.numel())
    values, indices = flat.topk(keep)
    codes = torch.zeros_like(flat).scatter(0, indices, values.relu()).view_as(pre)
    return codes, values[-1].detach()


@dataclass(frozen=True)
class SAEParams:
    """A trained SAE as plain arrays (what :mod:`core.dictionary.store` writes).

    Attributes:
        architecture: one of :data:`ARCHITECTURES`.
        k: active features per token (``topk``, ``batchtopk``; 0 for ``relu``).
        W_enc: ``[d_in, d_sae]`` encoder.
        b_enc: ``[d_sae]`` encoder bias.
        W_dec: ``[d_sae, d_in]`` decoder; rows have unit norm in the normalised space.
        b_dec: ``[d_in]`` decoder bias (subtracted from the input first), normalised space.
        threshold: ``[d_sae]`` inference thresholds on pre-activations of ``batchtopk`` (one
            value repeated; SAELens's ``jumprelu`` stores one per feature; zeros otherwise).
        scale: what multiplies a raw token to give the normalised one.
        layer: the layer it was trained on.
        history: ``[steps, 3]`` per step: loss, fraction of variance explained, mean L0.
    """

    architecture: str
    k: int
    W_enc: np.ndarray
    b_enc: np.ndarray
    W_dec: np.ndarray
    b_dec: np.ndarray
    threshold: np.ndarray
    scale: float
    layer: str
    history: np.ndarray

    @property
    def d_in(self) -> int:
        """Width of the layer's tokens."""
        return int(self.W_enc.shape[0])

    @property
    def d_sae(self) -> int:
        """Number of features."""
        return int(self.W_enc.shape[1])


class SAE(nn.Module):
    """The autoencoder as a module (see the module docstring for the formulas)."""

    def __init__(self, d_in: int, d_sae: int, architecture: str = "batchtopk", k: int = 16):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"Unknown SAE {architecture!r}: use one of {ARCHITECTURES}.")
        self.architecture, self.k = architecture, k
        self.W_enc = nn.Parameter(torch.zeros(d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("threshold", torch.zeros(d_sae))
        self.register_buffer("scale", torch.ones(()))

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, d_in]`` raw tokens -> ``[B, d_sae]`` pre-activations."""
        return (x * self.scale - self.b_dec) @ self.W_enc + self.b_enc

    def activate(self, pre: torch.Tensor, training: bool = False) -> torch.Tensor:
        """The sparsity rule on ``[B, d_sae]`` pre-activations (``training``: BatchTopK's batch
        rule instead of its threshold)."""
        if self.architecture == "topk":
            return topk_mask(pre, self.k)
        if self.architecture == "batchtopk":
            if training:
                return batch_topk_mask(pre, self.k)[0]
            return pre * (pre > self.threshold)
        return pre.relu()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, d_in]`` raw tokens -> ``[B, d_sae]`` sparse codes (inference rule)."""
        return self.activate(self.pre_acts(x))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``[B, d_sae]`` codes -> ``[B, d_in]`` reconstructed raw tokens."""
        return (codes @ self.W_dec + self.b_dec) / self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        """Gives every decoder row unit norm (after each optimiser step)."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp(min=1e-8)

    def params(self, layer: str, history: np.ndarray) -> SAEParams:
        """The module as :class:`SAEParams` (CPU float32 arrays)."""

        def arr(t: torch.Tensor) -> np.ndarray:
            return t.detach().float().cpu().numpy().copy()

        return SAEParams(
            self.architecture, self.k, arr(self.W_enc), arr(self.b_enc), arr(self.W_dec),
            arr(self.b_dec), arr(self.threshold), float(self.scale), layer, history,
        )  # fmt: skip

    @classmethod
    def from_params(cls, p: SAEParams) -> SAE:
        """The module for ``p`` (on the CPU, eval mode)."""
        sae = cls(p.d_in, p.d_sae, p.architecture, p.k)
        with torch.no_grad():
            for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
                getattr(sae, name).copy_(torch.from_numpy(np.asarray(getattr(p, name))))
            sae.threshold.copy_(torch.from_numpy(np.asarray(p.threshold, np.float32)))
            sae.scale.fill_(p.scale)
        return sae.eval()


def norm_scale(tokens: np.ndarray) -> float:
    """What multiplies ``[M, d]`` tokens so that their mean norm is ``sqrt(d)``."""
    mean_norm = float(np.linalg.norm(tokens.astype(np.float32), axis=1).mean())
    return math.sqrt(tokens.shape[1]) / max(mean_norm, 1e-8)
