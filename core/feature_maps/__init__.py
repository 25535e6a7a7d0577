"""What single units respond to: channel maps, top-activating examples, feature visualisation.

Registered analyses (importing the modules registers them): ``maps.sample_maps``,
``weights`` (``first_conv_filters``, ``input_weights``), ``top_examples`` (``channel_stats``,
``receptive_field``), ``visualisation.feature_vis`` and ``pca_colour.pca_colour``. This file
imports nothing, so the fit worker can import ``core`` without torch.
"""

BUILDING_BLOCKS: dict[str, str] = {
    "maps.resolve_layer": "turns an options' empty layer into the model's default layer",
    "pca_colour.resolve_pca_layer": "turns an empty PCA-colour layer into the model's default",
    "pca_colour.position_vectors": "a layer's output as vectors on its grid (ViT patches placed)",
    "pca_colour.apply_basis": "colours new images with a basis fitted before (same part, colour)",
}
"""Public functions of this folder that take a model but are not registered analyses."""
