"""Whole layers as point clouds: features, UMAP/PCA/t-SNE fits, probes, CKA, the report card.

Registered analyses (see :mod:`core.analysis`): ``projections.layer_features``
(:mod:`.features`), ``projections.projection`` and ``projections.depth_projection``
(:mod:`.maps`), ``projections.layer_report`` and ``projections.layer_grams``
(:mod:`.report_card`). :mod:`.fits`, :mod:`.probes` and :mod:`.similarity` take arrays, not
models, so the fit worker (:mod:`core.worker`) imports them without torch; this file imports
nothing for the same reason.
"""

BUILDING_BLOCKS: dict[str, str] = {
    "features.layers_features": (
        "several layers in as few forward passes as memory allows; returns one LayerFeatures "
        "per layer, for depth_projection and the app's across-depth cache"
    ),
    "features.feature_layer": "resolves an options' empty layer to the default one; no result",
    "report_card.report_layers": "names the layers a report covers; computes nothing a page shows",
}
"""Public functions of this folder that take a model but are not analyses, and why."""
