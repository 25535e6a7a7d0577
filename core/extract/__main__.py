"""``python -m core.extract RUN --data FOLDER_OR_DATASET --layers L1,L2 --out STORE``.

Rerunning the same command resumes an interrupted extraction; ``--verify`` only checks a
store's chunks against their checksums and lists the bad ones.
"""

from __future__ import annotations

import argparse
import sys

from core.extract.compute import SPATIAL
from core.extract.extract import CHUNK_ROWS, ENGINES, TOP_K, extract
from core.extract.store import ActivationStore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.extract", description=__doc__)
    parser.add_argument("run", nargs="?", help="a run's name (shipped or yours)")
    parser.add_argument("--data", help="image folder or dataset name (default: the run's)")
    parser.add_argument("--n", type=int, help="images to draw/sample (dataset names)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", help="comma-separated layer names")
    parser.add_argument("--out", required=True, help="the store folder")
    parser.add_argument("--spatial", choices=SPATIAL, default="pooled")
    parser.add_argument("--engine", choices=ENGINES, default="local")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS)
    parser.add_argument("--top-k", type=int, default=TOP_K)
    parser.add_argument("--workers", type=int, default=2, help="Ray workers")
    parser.add_argument("--address", help="an existing Ray cluster (default: start a local one)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: the best available)")
    parser.add_argument("--verify", action="store_true", help="check the store's checksums only")
    args = parser.parse_args(argv)
    if args.verify:
        bad = ActivationStore.open(args.out).verify()
        print("all chunks verified" if not bad else f"bad chunks: {bad}")
        return 1 if bad else 0
    if not args.run or not args.layers:
        parser.error("RUN and --layers are required unless --verify.")
    store = extract(
        args.run,
        [name.strip() for name in args.layers.split(",") if name.strip()],
        args.out,
        data=args.data,
        n=args.n,
        seed=args.seed,
        spatial=args.spatial,
        engine=args.engine,
        batch_size=args.batch_size,
        chunk_rows=args.chunk_rows,
        top_k=args.top_k,
        workers=args.workers,
        address=args.address,
        device=args.device,
    )
    print(
        f"{store.path}: {store.n:,} samples, {len(store.layers)} arrays, {store.disk_bytes():,} B"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
