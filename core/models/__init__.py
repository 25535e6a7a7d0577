"""Models and runs: the architecture zoo, training, runs on disk, evaluation, shipped runs.

The one analysis of this family is ``models.predictions`` (:mod:`core.models.evaluation`).
Training, run storage, imports and the zoo are not analyses: they build, load or write a model
rather than compute something about it. Their public functions that take a model are listed in
:data:`BUILDING_BLOCKS` with the reason. This file imports nothing heavy (no torch).
"""

BUILDING_BLOCKS: dict[str, str] = {
    "evaluation.predict": (
        "arrays in, Predictions out: the training loop, import scoring and the faithfulness "
        "curves score plain arrays; models.predictions calls it"
    ),
    "zoo.load_weights": "loads a state dict into a model: storage, computes nothing to show",
    "runs.apply_normalization": (
        "adds an imported run's input normalisation to its model: loading, not an analysis"
    ),
    "runs.RunWriter.save_epoch": "writes a training checkpoint: storage, not an analysis",
    "runs.RunWriter.save_checkpoint": "writes a training checkpoint: storage, not an analysis",
    "train.head_name": "names the classifier a transfer replaces: building, not an analysis",
    "train.transfer_weights": "copies a source run's weights before training: building",
}
"""Public functions of ``core.models`` that take a model but are not registered analyses."""
