"""The GPU fit behind :func:`core.projections.large.project_large`: TorchDR's UMAP on CUDA.

TorchDR (``pip install -e '.[gpu]'``) implements UMAP in torch: the neighbour graph and the
optimisation run on the GPU over every point, so no sample is needed. It is used only when
CUDA is available and TorchDR imports (:func:`use_gpu`); otherwise umap-learn on the CPU,
which stays the reference (its coordinates differ from TorchDR's: same objective, different
optimiser). ``LAYERSCOPE_DEVICE=cpu`` or ``device="cpu"`` forces the CPU path.

What can go wrong: TorchDR's default neighbour backend is faiss, which is not a dependency;
we ask for its plain-torch backend. Runs are seeded but CUDA reductions are not bit-for-bit
reproducible: reruns agree to float precision, not exactly.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np


def use_gpu(device: str | None = None) -> bool:
    """Whether the large-map fit runs on the GPU: ``device`` (or ``LAYERSCOPE_DEVICE``) allows
    it, CUDA is available and TorchDR is installed."""
    choice = device or os.environ.get("LAYERSCOPE_DEVICE") or "auto"
    if choice not in ("auto", "cuda") or importlib.util.find_spec("torchdr") is None:
        return False
    import torch

    return torch.cuda.is_available()


def gpu_umap(
    x: np.ndarray, n_neighbors: int, min_dist: float, seed: int, device: str = "cuda"
) -> np.ndarray:
    """TorchDR UMAP of every row of ``x [N, d]`` on ``device``: ``[N, 2]`` float32."""
    import torch
    import torchdr

    model = torchdr.UMAP(
        n_neighbors=n_neighbors,
        n_components=2,
        min_dist=min_dist,
        device=device,
        backend=None,
        random_state=seed,
    )
    coords = model.fit_transform(torch.as_tensor(np.asarray(x, np.float32)))
    return np.asarray(torch.as_tensor(coords).detach().cpu(), dtype=np.float32)
