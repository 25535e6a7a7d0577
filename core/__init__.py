"""layerscope's library: train or load a model, capture its layers, analyse them. No Streamlit.

Layout: foundation modules sit at the top (``device``, ``threads``, ``hooks``, ``activations``,
``files``, ``worker``, ``result_store``, ``analysis``); everything else lives in one folder per
family: ``data/``, ``models/``, and one per page (``feature_maps/``, ``projections/``,
``attention/``, ``attributions/``).

The analysis contract (stated here once, kept everywhere; see :mod:`core.analysis`)::

    analysis(model, batch: Batch, options: XOptions, *, progress=None) -> XResult

- ``XOptions`` is a frozen, hashable dataclass of plain fields that round-trips to URL query
  parameters and JSON (:func:`core.analysis.to_query`, :func:`core.analysis.to_json`).
- ``XResult`` is a frozen dataclass of CPU numpy arrays (and small plain values), with shapes
  in its docstring.
- ``is_compatible(layers) -> Compatibility``, beside an analysis that does not apply to every
  model, says so with a reason a page can show.
- Each analysis is registered (:func:`core.analysis.register`); pages, URL state, the audit
  report and the contract tests iterate over :data:`core.analysis.REGISTRY`.
- Hooks live only inside a function or context manager that removes them in ``finally``.
  Layers are named by ``named_modules()`` names; seeds are explicit.

This ``__init__`` imports nothing: the fit worker imports ``core`` modules without torch.
"""
