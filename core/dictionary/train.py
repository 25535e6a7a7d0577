"""Training an SAE on one layer, streaming its tokens from a float16 file on disk.

The layer's output over the training images is captured once, batch by batch, into a float16
memory-map (:func:`core.activations.capture_dataset`), so memory is one batch of images; each
step then reads a random set of images from it and trains on all their tokens. The recipe:
inputs scaled to a mean norm of ``sqrt(d_in)``, decoder rows initialised from random centred
data points (unit norm, the encoder their transpose), ``b_dec`` the data mean, Adam, decoder
rows renormalised after every step. Dead features (none fired for :data:`DEAD_STEPS` steps)
get the AuxK loss of Gao et al. 2024 (their top ``d_in / 2`` pre-activations must explain the
main reconstruction's residual, so the gradient finds them again), and those still dead at 20,
30, 40 and 50 % of the steps are resampled towards the worst-reconstructed tokens (Bricken et
al. 2023). ``relu`` adds an L1 penalty ramped up linearly over the first ``l1_warmup`` of the
steps.

What can go wrong: a layer whose tokens are all zero (the scale is meaningless: ``ValueError``),
a Stop (``progress`` raises; the temporary file is removed).
"""

from __future__ import annotations

import math
import tempfile
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from core.activations import capture_dataset
from core.analysis import Batch, Inputs, register
from core.device import pick_device
from core.dictionary.sae import SAE, SAEParams, batch_topk_mask, norm_scale, topk_mask
from core.dictionary.tokens import to_tokens, token_site

Architecture = Literal["batchtopk", "topk", "relu"]
TRAIN_INPUTS = Inputs(split="train")
"""The images an SAE is trained on: the run's whole training split."""
DEAD_STEPS = 50
"""A feature that fired in none of this many steps is dead (and gets the AuxK gradient)."""
AUX_WEIGHT = 1 / 32
"""Weight of the AuxK loss (Gao et al. 2024)."""


@dataclass(frozen=True)
class TrainOptions:
    """How :func:`train_sae` trains."""

    layer: str = ""  # a named_modules() name; "": the middle block (tokens.default_layer)
    architecture: Architecture = "batchtopk"  # sparsity rule (core.dictionary.sae)
    k: int = 16  # active features per token (topk, batchtopk)
    expansion: int = 8  # features per input width: d_sae = expansion * d_in
    steps: int = 500  # optimiser steps
    batch_tokens: int = 2048  # tokens per step (all the tokens of a random set of images)
    lr: float = 0.002  # Adam learning rate
    l1: float = 0.3  # relu only: weight of the L1 penalty on the codes
    l1_warmup: float = 0.1  # relu only: fraction of the steps over which the L1 weight ramps up
    seed: int = 0  # initialisation and the order of the images


@contextmanager
def _few_threads(device: torch.device) -> Iterator[None]:
    """One CPU thread for the loop: its matrices are too small to gain from a second, and on
    shared cores the threads' contention made it 7x slower (measured: 400 s against 56 s)."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fve(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Fraction of the variance of ``[B, d]`` tokens that ``x_hat`` explains."""
    return 1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum().clamp(min=1e-12)


def _init_from_data(sae: SAE, sample: torch.Tensor, generator: torch.Generator) -> None:
    """Decoder rows = random centred data points (unit norm), encoder = their transpose."""
    centred = sample - sample.mean(0)
    picks = torch.randint(len(sample), (sae.W_dec.shape[0],), generator=generator)
    rows = centred[picks] + 1e-3 * torch.randn(len(picks), sample.shape[1], generator=generator)
    with torch.no_grad():
        sae.W_dec.copy_(rows)
        sae.normalise_decoder()
        sae.W_enc.copy_(sae.W_dec.T)
        sae.b_dec.copy_(sample.mean(0))
        # scale the encoder so that the first reconstructions are as long as the inputs
        codes = sae.activate((sample - sae.b_dec) @ sae.W_enc, training=True)
        length = (codes @ sae.W_dec).norm(dim=1).mean().clamp(min=1e-8)
        sae.W_enc.mul_(centred.norm(dim=1).mean() / length)


@register(
    "dictionary.train",
    family="dictionary",
    title="Train a sparse autoencoder on a layer",
    options=TrainOptions,
)
def train_sae(
    model: nn.Module,
    batch: Batch,
    options: TrainOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> SAEParams:
    """Trains an SAE on the tokens of ``options.layer`` over ``batch``'s images.

    Args:
        model: the model (only read).
        batch: the images (e.g. :data:`TRAIN_INPUTS`).
        options: layer, sparsity rule, size and schedule.
        progress: called as ``progress(done, total)``: capture batches, then steps.

    Raises:
        ValueError: no images, an unknown architecture, a layer an SAE cannot read, tokens that
            are all zero.
    """
    images = batch.images
    if len(images) == 0:
        raise ValueError("No images to train an SAE on.")
    site = token_site(model, images.shape[1:], options.layer)
    capture_batch = 256
    n_capture = math.ceil(len(images) / capture_batch)
    total = n_capture + options.steps

    def captured(done: int, _n: int) -> None:
        if progress is not None:
            progress(math.ceil(done / capture_batch), total)

    generator = torch.Generator().manual_seed(options.seed)
    device = pick_device()
    with tempfile.TemporaryDirectory(prefix="layerscope-sae-") as folder:
        stored = capture_dataset(
            model, images, [site.layer], batch_size=capture_batch, float16=True,
            out_dir=folder, progress=captured,
        ).arrays[site.layer]  # fmt: skip
        per_step = min(len(images), max(1, math.ceil(options.batch_tokens / site.per_image)))
        first = torch.randperm(len(images), generator=generator)[: max(per_step, 64)]
        sample = to_tokens(torch.from_numpy(stored[np.sort(first.numpy())]).float(), site)
        scale = norm_scale(sample.numpy())
        if not np.isfinite(scale) or float(sample.abs().max()) == 0:
            raise ValueError(f"{site.layer}'s tokens are all zero: nothing to learn.")
        sae = SAE(site.d_in, options.expansion * site.d_in, options.architecture, options.k)
        sae.scale.fill_(scale)
        _init_from_data(sae, sample * scale, generator)
        sae = sae.to(device).train()
        with _few_threads(device):
            history = _fit(
                sae, stored, site, options, per_step, generator, device, n_capture, total, progress
            )
    return sae.cpu().eval().params(site.layer, history)


def _fit(
    sae: SAE,
    stored: np.ndarray,
    site: object,
    options: TrainOptions,
    per_step: int,
    generator: torch.Generator,
    device: torch.device,
    offset: int,
    total: int,
    progress: Callable[[int, int], None] | None,
) -> np.ndarray:
    """The optimisation loop; returns ``[steps, 3]`` loss, FVE and L0 per step."""
    optimiser = torch.optim.Adam(sae.parameters(), lr=options.lr, betas=(0.9, 0.999))
    d_sae, d_in = sae.W_dec.shape
    since_fired = torch.zeros(d_sae, dtype=torch.long, device=device)
    history = np.zeros((options.steps, 3), dtype=np.float32)
    threshold_sum, threshold_n = 0.0, 0
    resample_at = {options.steps * i // 10 for i in (2, 3, 4, 5)}
    for step in range(options.steps):
        picks = torch.randperm(len(stored), generator=generator)[:per_step].sort().values
        raw = torch.from_numpy(stored[picks.numpy()]).float()
        x = (to_tokens(raw, site) * sae.scale.cpu()).to(device)
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
        if options.architecture == "batchtopk":
            codes, smallest = batch_topk_mask(pre, options.k)
            if step >= options.steps // 2:  # the threshold of a settled dictionary
                threshold_sum, threshold_n = threshold_sum + float(smallest), threshold_n + 1
        elif options.architecture == "topk":
            codes = topk_mask(pre, options.k)
        else:
            codes = pre.relu()
        x_hat = codes @ sae.W_dec + sae.b_dec
        residual = x - x_hat
        loss = residual.pow(2).sum(-1).mean()
        if options.architecture == "relu":
            ramp = min(1.0, (step + 1) / max(1.0, options.l1_warmup * options.steps))
            loss = loss + options.l1 * ramp * codes.sum(-1).mean()
        fired = (codes > 0).any(0)
        since_fired = torch.where(fired, 0, since_fired + 1)
        dead = since_fired >= DEAD_STEPS
        if options.architecture != "relu" and bool(dead.any()):
            dead_pre = torch.where(dead, pre, torch.full_like(pre, -torch.inf))
            aux_codes = topk_mask(dead_pre, min(d_in // 2 or 1, int(dead.sum())))
            aux_codes = torch.nan_to_num(aux_codes, neginf=0.0)
            target = residual.detach()
            aux = (aux_codes @ sae.W_dec - target).pow(2).sum(-1).mean()
            loss = loss + AUX_WEIGHT * aux / target.pow(2).sum(-1).mean().clamp(min=1e-8)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        sae.normalise_decoder()
        if step + 1 in resample_at and bool(dead.any()):
            _resample(sae, optimiser, dead, residual.detach(), generator)
            since_fired[dead] = 0
        with torch.no_grad():
            history[step] = (
                float(loss),
                float(_fve(x, x_hat)),
                float((codes > 0).sum(-1).float().mean()),
            )
        if progress is not None:
            progress(offset + step + 1, total)
    if threshold_n:
        sae.threshold.fill_(threshold_sum / threshold_n)
    return history


def training_summary(params: SAEParams, seconds: float) -> dict[str, float]:
    """What an SAE's listing shows: FVE and L0 over the last tenth of training, and its time."""
    tail = params.history[-max(1, len(params.history) // 10) :]
    return {
        "train_fve": round(float(tail[:, 1].mean()), 4) if len(tail) else float("nan"),
        "train_l0": round(float(tail[:, 2].mean()), 2) if len(tail) else float("nan"),
        "seconds": round(seconds, 1),
    }


@torch.no_grad()
def _resample(
    sae: SAE,
    optimiser: torch.optim.Optimizer,
    dead: torch.Tensor,
    residual: torch.Tensor,
    generator: torch.Generator,
) -> None:
    """Points dead features at tokens the SAE reconstructs worst (Bricken et al. 2023): decoder
    row = a high-error token's residual (unit norm), encoder = it at 0.2x the live encoders'
    norm, bias 0, and their optimiser state cleared."""
    index = dead.nonzero().flatten()
    weights = residual.pow(2).sum(-1).cpu()
    picks = torch.multinomial(weights + 1e-12, len(index), replacement=True, generator=generator)
    rows = residual[picks.to(residual.device)]
    rows = rows / rows.norm(dim=1, keepdim=True).clamp(min=1e-8)
    alive = ~dead
    norm = sae.W_enc[:, alive].norm(dim=0).mean() if bool(alive.any()) else torch.tensor(1.0)
    sae.W_dec[index] = rows
    sae.W_enc[:, index] = rows.T * 0.2 * norm
    sae.b_enc[index] = 0
    for param, cut in ((sae.W_dec, index), (sae.b_enc, index)):
        for moment in optimiser.state.get(param, {}).values():
            if torch.is_tensor(moment) and moment.ndim:
                moment[cut] = 0
    for moment in optimiser.state.get(sae.W_enc, {}).values():
        if torch.is_tensor(moment) and moment.ndim:
            moment[:, index] = 0


def resolve_sae(model: nn.Module, batch: Batch, run: str, sae: str) -> tuple[SAEParams, object]:
    """The SAE ``sae`` saved in run ``run`` (see :mod:`core.dictionary.store`), and its token
    site; with both empty, a default SAE trained on ``batch`` (what the contract tests run).

    Raises:
        ValueError: an SAE that does not exist, or one for another layer width.
    """
    if sae:
        from core.dictionary.store import load_sae, sae_folder

        params = load_sae(sae_folder(run, sae))
    else:
        params = train_sae(model, batch, TrainOptions(steps=60))
    site = token_site(model, batch.images.shape[1:], params.layer)
    if site.d_in != params.d_in:
        raise ValueError(
            f"The SAE reads {params.d_in} wide tokens, {site.layer} gives {site.d_in}."
        )
    return params, site


ARCHITECTURES = typing.get_args(Architecture)
