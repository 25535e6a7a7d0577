"""SAEs saved inside a run, in SAELens's layout, so SAELens can load them too.

``<run>/saes/<id>/cfg.json`` + ``sae_weights.safetensors`` (``W_enc [d_in, d_sae]``, ``b_enc``,
``W_dec [d_sae, d_in]``, ``b_dec``, and ``threshold`` for ``jumprelu``), plus
``training.safetensors`` (the per-step history). The input scale is folded into the weights,
so the stored SAE reads the layer's raw tokens (``normalize_activations: "none"``); what
layerscope needs beyond SAELens's fields sits under ``cfg["layerscope"]``. BatchTopK is stored
as ``jumprelu`` with its one threshold per feature, as SAELens does.

An id names the layer, the rule, the size and a hash of the decoder, so a cached result keyed
by id never belongs to another SAE. A folder is written under a temporary name and renamed,
so a half-written SAE is never listed.
The shipped runs are read-only: SAEs trained on them go to the user's runs root, under
``.shipped-saes/<run>/saes`` (a folder :func:`core.models.runs.scan_runs` ignores).

What can go wrong: a cfg that is not SAELens's (``ValueError`` naming the field), SAELens's
activation normalisations other than ``none`` (their scale lives outside the folder: refused),
an SAE trained on other weights than the run's now (:attr:`SavedSAE.stale`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from core.dictionary.sae import SAEParams
from core.files import read_json, write_json
from core.models.runs import find_run, read_run, runs_root

SAELENS_ARCHITECTURE = {"batchtopk": "jumprelu", "topk": "topk", "relu": "standard"}


@dataclass(frozen=True)
class SavedSAE:
    """One SAE of a run, as listed.

    Attributes:
        id: the folder's name.
        path: the folder.
        layer: the layer it reads.
        architecture: ``batchtopk``, ``topk``, ``relu`` (or SAELens's name for a foreign one).
        k: active features per token (0: not a top-k SAE).
        d_sae: number of features.
        created: ISO time.
        stale: trained on other weights than the run's current ones.
        deletable: in the user's runs root (not shipped).
        summary: a few numbers measured at training (fve, l0, seconds), may be empty.
    """

    id: str
    path: Path
    layer: str
    architecture: str
    k: int
    d_sae: int
    created: str
    stale: bool
    deletable: bool
    summary: dict[str, float]


def sae_roots(run: str) -> list[Path]:
    """Where run ``run``'s SAEs live: the writable root first."""
    info = read_run(find_run(run))
    if info.shipped:
        return [runs_root() / ".shipped-saes" / run / "saes", info.path / "saes"]
    return [info.path / "saes"]


def sae_folder(run: str, sae: str) -> Path:
    """The folder of SAE ``sae`` of run ``run``. Raises ``ValueError`` when there is none."""
    for root in sae_roots(run):
        if (root / sae / "cfg.json").is_file():
            return root / sae
    raise ValueError(f"Run {run} has no SAE called {sae!r}.")


def _folded(p: SAEParams) -> dict[str, torch.Tensor]:
    """The weights with the input scale folded in (they read raw tokens)."""
    s = p.scale
    out = {
        "W_enc": torch.from_numpy(p.W_enc * s),
        "b_enc": torch.from_numpy(p.b_enc),
        "W_dec": torch.from_numpy(p.W_dec / s),
        "b_dec": torch.from_numpy(p.b_dec / s),
    }
    if p.architecture == "batchtopk":
        out["threshold"] = torch.from_numpy(np.asarray(p.threshold, np.float32))
    return {k: v.float().contiguous() for k, v in out.items()}


def sae_cfg(p: SAEParams, run: str, extra: dict[str, Any]) -> dict[str, Any]:
    """``cfg.json``: SAELens's fields (v6 and the older top-level hook fields) and ours."""
    architecture = SAELENS_ARCHITECTURE[p.architecture]
    return {
        "architecture": architecture,
        "d_in": p.d_in,
        "d_sae": p.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        **({"k": p.k} if architecture == "topk" else {}),
        "activation_fn_str": "topk" if architecture == "topk" else "relu",
        "activation_fn_kwargs": {"k": p.k} if architecture == "topk" else {},
        "hook_name": p.layer,
        "model_name": run,
        "metadata": {"hook_name": p.layer, "model_name": run},
        "layerscope": {
            "architecture": p.architecture, "k": p.k, "scale": p.scale, "layer": p.layer, **extra
        },
    }  # fmt: skip


def _unique(root: Path, base: str) -> str:
    name, i = base, 2
    while (root / name).exists():
        name, i = f"{base}-{i}", i + 1
    return name


def save_sae(
    run: str, p: SAEParams, extra: dict[str, Any] | None = None, *, ship: bool = False
) -> str:
    """Saves ``p`` as a new SAE of run ``run``; returns its id.

    Args:
        extra: more to keep under ``cfg["layerscope"]`` (options, numbers measured).
        ship: write into a shipped run's own folder (``python -m core.dictionary --ship``).
    """
    root = sae_roots(run)[-1 if ship else 0]
    root.mkdir(parents=True, exist_ok=True)
    info = read_run(find_run(run))
    extra = {
        "weights_sha256": info.weights_sha256,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    digest = hashlib.sha256(np.ascontiguousarray(p.W_dec).tobytes()).hexdigest()[:6]
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{p.layer}-{p.architecture}-{p.d_sae}-{digest}")
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        write_json(tmp / "cfg.json", sae_cfg(p, run, extra))
        save_file(_folded(p), str(tmp / "sae_weights.safetensors"))
        save_file({"history": torch.from_numpy(p.history)}, str(tmp / "training.safetensors"))
        name = _unique(root, base)
        os.rename(tmp, root / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return name


def _k_of(cfg: dict[str, Any]) -> int:
    return int(cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k") or 0)


def load_sae(folder: str | Path) -> SAEParams:
    """An SAE from a folder in SAELens's layout (ours, or one SAELens wrote).

    Raises:
        ValueError: a missing field, an unknown architecture, or a normalisation other than
            ``none`` / the layerscope scale.
    """
    folder = Path(folder)
    cfg = read_json(folder / "cfg.json")
    weights = {
        k: v.float().numpy() for k, v in load_file(str(folder / "sae_weights.safetensors")).items()
    }
    ours = cfg.get("layerscope")
    try:
        w_enc, b_enc, w_dec, b_dec = (weights[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec"))
    except KeyError as err:
        raise ValueError(f"{folder.name}: sae_weights.safetensors lacks {err}.") from err
    if ours:
        architecture, k, scale, layer = (
            ours["architecture"],
            int(ours["k"]),
            ours["scale"],
            ours["layer"],
        )
    else:
        if cfg.get("normalize_activations", "none") not in ("none", None):
            raise ValueError(
                f"{folder.name}: normalize_activations={cfg['normalize_activations']!r} needs a "
                "scale kept outside the folder; only 'none' can be read."
            )
        name = cfg.get("architecture", "standard")
        if name not in ("standard", "topk", "jumprelu"):
            raise ValueError(f"{folder.name}: SAELens architecture {name!r} is not supported.")
        architecture = {"standard": "relu", "topk": "topk", "jumprelu": "batchtopk"}[name]
        k, scale = _k_of(cfg), 1.0
        layer = cfg.get("hook_name") or (cfg.get("metadata") or {}).get("hook_name") or ""
        if cfg.get("apply_b_dec_to_input", True) is False:  # pre = x W_enc + b_enc
            b_enc = b_enc + b_dec @ w_enc  # ours subtracts b_dec first: add it back
    threshold = weights.get("threshold", np.zeros(w_enc.shape[1], np.float32))
    history_file = folder / "training.safetensors"
    history = (
        load_file(str(history_file))["history"].numpy()
        if history_file.is_file()
        else np.zeros((0, 3), np.float32)
    )
    return SAEParams(
        architecture, k, w_enc * (1 / scale), b_enc, w_dec * scale, b_dec * scale,
        np.asarray(threshold, np.float32), float(scale), layer, history,
    )  # fmt: skip


def list_saes(run: str) -> list[SavedSAE]:
    """Every SAE of run ``run``, newest first."""
    current = read_run(find_run(run)).weights_sha256
    found = []
    for i, root in enumerate(sae_roots(run)):
        for cfg_path in sorted(root.glob("*/cfg.json")) if root.is_dir() else []:
            if cfg_path.parent.name.startswith("."):
                continue
            cfg = read_json(cfg_path)
            ours = cfg.get("layerscope") or {}
            found.append(
                SavedSAE(
                    id=cfg_path.parent.name,
                    path=cfg_path.parent,
                    layer=ours.get("layer") or cfg.get("hook_name", ""),
                    architecture=ours.get("architecture") or cfg.get("architecture", "?"),
                    k=int(ours.get("k", _k_of(cfg))),
                    d_sae=int(cfg["d_sae"]),
                    created=ours.get("created", ""),
                    stale=bool(ours.get("weights_sha256")) and ours["weights_sha256"] != current,
                    deletable=i == 0,
                    summary=dict(ours.get("summary", {})),
                )
            )
    return sorted(found, key=lambda s: s.created, reverse=True)


def delete_sae(run: str, sae: str) -> None:
    """Deletes SAE ``sae`` of run ``run``. Raises ``ValueError`` for a shipped or unknown one."""
    folder = sae_folder(run, sae)
    if folder.parent != sae_roots(run)[0]:
        raise ValueError(f"SAE {sae} ships with {run} and cannot be deleted.")
    shutil.rmtree(folder)
