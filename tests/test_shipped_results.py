"""The shipped runs carry the results of their first views, for their own weights, in < 10 MB."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.models.precompute import VERSIONS
from core.models.runs import SHIPPED_RUNS, read_run
from core.models.shipped import SHIPPED_CONFIGS
from core.result_store import stored_results


@pytest.mark.parametrize("name", list(SHIPPED_CONFIGS))
def test_stored_results_are_for_the_shipped_weights(name: str) -> None:
    info = read_run(SHIPPED_RUNS / name)
    analyses = set()
    for path in stored_results(info.path):
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"][()]))
        assert meta["weights_sha256"] == info.weights_sha256, f"{path.name}: run make assets"
        assert meta["args"]["v"] == VERSIONS[meta["analysis"]], f"{path.name}: run make assets"
        analyses.add(meta["analysis"])
    expected = {"predictions", "sample-predictions", "report", "cka", "feature-info", "projection"}
    assert expected | {"depth"} <= analyses
    if info.arch.startswith("vit"):
        assert {"head-stats", "object-attention"} <= analyses


def test_the_shipped_runs_fit_in_ten_megabytes() -> None:
    total = sum(p.stat().st_size for p in SHIPPED_RUNS.rglob("*") if p.is_file())
    assert total <= 10_000_000


@pytest.mark.parametrize("name", list(SHIPPED_CONFIGS))
def test_every_first_view_is_stored(name: str) -> None:
    """What the pages ask for first, with today's recipes and defaults, is found in the store."""
    from core.attention.objects import ObjectAttention
    from core.attention.sites import has_attention
    from core.attention.statistics import HeadStatistics
    from core.models import precompute
    from core.models.evaluation import Predictions
    from core.models.runs import load_run
    from core.models.shipped import MAP_LAYERS, _map_layers
    from core.projections.features import FeatureInfo
    from core.projections.fits import DepthProjection, Projection
    from core.projections.report_card import CKA, LayerReport

    run = load_run(name, roots=[SHIPPED_RUNS], device="cpu")
    n = precompute.projection_n(run)
    ladder = tuple(precompute.report_layers(run))
    wanted = [
        ("predictions", {"split": "val"}, Predictions),
        ("sample-predictions", {"n": n, "seed": 0}, Predictions),
        ("report", precompute.report_args(run, 1000, "trained", 0), LayerReport),
        ("report", precompute.report_args(run, 1000, "random", 0), LayerReport),
        ("cka", precompute.cka_args(run, 1000, None, 0), CKA),
        ("cka", precompute.cka_args(run, 1000, "random", 0), CKA),
        ("depth", {"layers": ladder, "n": 1000, "method": "PCA", "seed": 0}, DepthProjection),
    ]
    for layer in dict.fromkeys([*ladder, *_map_layers(run, MAP_LAYERS.get(name, "none"))]):
        wanted.append(("feature-info", {"layer": layer, "n": n, "seed": 0}, FeatureInfo))
        args = {"layer": layer, "n": n, "method": "UMAP", "dims": 2, "seed": 0}
        wanted.append(("projection", args, Projection))
    if has_attention(run.model):
        wanted.append(("head-stats", {"split": "val"}, HeadStatistics))
        wanted.append(("object-attention", {"split": "val"}, ObjectAttention))
    missing = [(a, args) for a, args, kind in wanted if precompute.load(run, a, args, kind) is None]
    assert not missing, f"not stored (run make assets RESULTS_ONLY=1): {missing[:3]}"
