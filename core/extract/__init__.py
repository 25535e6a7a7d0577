"""Activation stores: a run's layers over a whole dataset, extracted once, read by any tool.

``python -m core.extract RUN --data FOLDER_OR_DATASET --layers L1,L2 --out STORE`` writes a
zarr group (:mod:`.store`) of float16 activations, logits, labels and sample ids, chunk by
chunk, each chunk checksummed in ``manifest.json``: an interrupted extraction resumes from its
completed chunks, and a corrupt chunk is redone, never read. Two engines compute the chunks:
``local`` (:mod:`.local`, this process) and ``ray`` (:mod:`.ray_engine`, Ray Data on a local or
existing cluster; an optional extra the app never imports). Per-chunk top-k examples per
channel are stored beside the activations and merged on read (:mod:`.topk`).

No analysis here is registered: extraction writes files rather than returning a result a page
shows, so its functions that take a model are building blocks.
"""

BUILDING_BLOCKS: dict[str, str] = {
    "compute.chunk_outputs": (
        "one chunk's stored arrays (activations, logits, shard top-k) for the store writer; "
        "both engines call it so their stores are equal bit for bit"
    ),
}
"""Public functions of this folder that take a model but are not analyses, and why."""
