"""Trains the default SAE on a run and saves it: ``python -m core.dictionary cnn-shapes``.

``--ship`` writes it into the run's own folder (for a shipped run: ``assets/runs/<run>/saes``,
about 70 KB for ``cnn-shapes``' middle block) instead of the user's runs root.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from core.analysis import Batch, to_json
from core.dictionary.store import save_sae
from core.dictionary.train import TrainOptions, train_sae, training_summary
from core.models.runs import load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run")
    parser.add_argument("--layer", default="", help="default: the middle block")
    parser.add_argument("--ship", action="store_true", help="save inside the run's own folder")
    args = parser.parse_args()
    run = load_run(args.run)
    data = run.dataset.subset(run.splits.train)
    batch = Batch(data.images, data.labels, data.factors, run.info.dataset.class_names)
    options = dataclasses.replace(TrainOptions(), layer=args.layer)
    started = time.perf_counter()
    params = train_sae(run.model, batch, options)
    seconds = time.perf_counter() - started
    summary = training_summary(params, seconds)
    extra = {"options": to_json(options), "summary": summary}
    sae = save_sae(args.run, params, extra, ship=args.ship)
    print(f"{args.run}: SAE {sae} on {params.layer} in {seconds:.0f} s, {summary}")


if __name__ == "__main__":
    main()
