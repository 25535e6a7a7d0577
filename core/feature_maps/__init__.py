"""What single units respond to: channel maps, top-activating examples, feature visualisation.

Registered analyses (importing the modules registers them): ``maps.sample_maps``,
``weights`` (``first_conv_filters``, ``input_weights``), ``top_examples`` (``channel_stats``,
``receptive_field``) and ``visualisation.feature_vis``. This file imports nothing, so
the fit worker can import ``core`` without torch.
"""

BUILDING_BLOCKS: dict[str, str] = {
    "maps.resolve_layer": "turns an options' empty layer into the model's default layer",
}
"""Public functions of this folder that take a model but are not registered analyses."""
