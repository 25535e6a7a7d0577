"""Attention heads of vision transformers: maps, rollout, head statistics, CLS tokens.

Modules: ``sites`` (where the attention layers are, reading their probabilities, the
compatibility check), ``layout`` (which tokens are patches), and one per registered analysis:
``maps`` (``attention.maps``), ``statistics`` (``attention.head_statistics``), ``cls_tokens``
(``attention.cls_tokens``), ``objects`` (``attention.object_attention``), ``norms``
(``attention.token_norms``). This file imports nothing heavy.
"""

MODULES = ("maps", "statistics", "cls_tokens", "objects", "norms")
"""The modules that register this family's analyses."""

BUILDING_BLOCKS: dict[str, str] = {
    "sites.attention_sites": "lists the attention layers every analysis here reads",
    "sites.has_attention": "a yes/no for callers that hold a model (precompute, cls layers)",
    "sites.require_sites": "attention_sites that raises NoAttentionError when there are none",
    "sites.cls_layers": "names the CLS pseudo-layers the projections and report card capture",
    "sites.forward_attention": "the one hooked pass that reads every head; analyses call it",
    "layout.token_layout": "reads the patch size off the model to place tokens on the image",
}
"""Public functions of this folder that take a model but are not registered analyses."""
