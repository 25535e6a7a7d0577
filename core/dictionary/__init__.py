"""Dictionary features: sparse autoencoders (SAEs) trained on one layer of a run.

A single channel is often polysemantic; an SAE rewrites a layer's activations as a sparse
combination of many more directions, each meant to be one concept. Modules: ``sae`` (the
autoencoder and its sparsity rules), ``tokens`` (a layer's output as token vectors and back),
``train`` (``dictionary.train``), ``store`` (SAELens-layout folders inside a run),
``features`` (``dictionary.features``: health panel and per-feature statistics),
``ground_truth`` (``dictionary.ground_truth``: AUCs against the factors of ``shapes``) and
``feature_page`` (one feature's maps, effects on the classes, steering). This file imports nothing.
"""

MODULES = ("train", "features", "ground_truth", "feature_page")
"""The modules that register this family's analyses."""

BUILDING_BLOCKS: dict[str, str] = {
    "tokens.default_layer": "names the layer an SAE is trained on when the options leave it empty",
    "tokens.token_site": "reads how a layer's output splits into tokens (patches, CLS, flat)",
    "tokens.splice": "the one hook that rewrites a layer's tokens; analyses call it in a with",
    "tokens.stream_tokens": "the model's token vectors at one layer, batch by batch",
    "train.resolve_sae": "the SAE an analysis's options name (or a default one trained on the "
    "batch), for every analysis here",
}
"""Public functions of this folder that take a model but are not registered analyses."""
