"""Datasets: the built-in ones, image folders and zips, and uploads.

Nothing here takes a model (datasets, folders and uploads are arrays and files), so nothing is
an analysis and :data:`BUILDING_BLOCKS` is empty. This file imports nothing heavy.
"""

BUILDING_BLOCKS: dict[str, str] = {}
"""Public functions of ``core.data`` that take a model but are not registered analyses: none."""
