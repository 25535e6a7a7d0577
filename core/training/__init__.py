"""Training dynamics: how a run's layers form across its checkpoints.

Every analysis here takes the model, a batch and its options like any other, plus
``checkpoints``: the run's state dicts in training order (:func:`core.models.runs.list_checkpoints`
lists the files). Without them the model's own weights are the only checkpoint, so each grid has
one column. Modules: ``checkpoints`` (one capture of pooled features per checkpoint, which every
grid reuses), and one per registered analysis: ``similarity`` (``training.cka_to_final``),
``probes`` (``training.probe_grid``), ``projection`` (``training.aligned_projection``),
``filters`` (``training.filters``), ``events`` (``training.learning_events``). This file imports
nothing heavy.
"""

MODULES = ("checkpoints", "similarity", "probes", "projection", "filters", "events")
"""The modules of this family."""

BUILDING_BLOCKS: dict[str, str] = {
    "checkpoints.at_checkpoints": "the model at each checkpoint in turn; analyses loop over it",
    "checkpoints.dynamics_layers": "the layers every grid covers (the report card's ladder)",
    "checkpoints.capture_checkpoints": "the one capture per checkpoint every grid here reads",
}
"""Public functions of this folder that take a model but are not registered analyses."""
