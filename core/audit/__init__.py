"""Audits: where a model fails, what it relies on, and a report someone else can check.

Registered analyses (importing the module registers them): ``audit.slices`` (:mod:`.slices`:
accuracy, confidence and confusion per value of every factor and per class) and
``audit.concept_test`` (:mod:`.concepts`: TCAV and FastCAV against random counterparts).
:mod:`.report` assembles the audit report from the analysis registry, :mod:`.html` writes it,
and ``python -m core.audit RUN --out DIR`` runs it without Streamlit. This file imports nothing
heavy.
"""

MODULES = ("slices", "concepts", "report")
"""The modules of this family (the first two register analyses)."""

BUILDING_BLOCKS: dict[str, str] = {
    "concepts.default_layers": "names the layers a concept test covers; computes nothing shown",
}
"""Public functions of this folder that take a model but are not registered analyses."""
