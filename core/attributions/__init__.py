"""Which pixels and units drive a prediction, and whether to trust it.

Registered analyses (importing the module registers them): ``attributions.maps``
(:mod:`.methods`), ``attributions.layer_units`` (:mod:`.layer_units`),
``attributions.sanity_check`` (:mod:`.sanity`) and ``attributions.faithfulness``
(:mod:`.faithfulness`). This file imports nothing heavy: captum loads with those modules.
"""

MODULES = ("methods", "layer_units", "sanity", "faithfulness")
"""The modules that register this family's analyses."""

BUILDING_BLOCKS: dict[str, str] = {
    "methods.attribute": "one method on one image: what every analysis here is made of",
    "methods.distinct_relus": "the fx rewrite DeepLift and Guided Backprop need; cached per model",
    "methods.resolve_methods": "an empty method tuple as the methods the model supports",
    "sanity.parameter_layers": "the order in which the sanity check randomises layers",
    "faithfulness.deletion_insertion": "curves of given maps (tests hand it exact maps)",
}
