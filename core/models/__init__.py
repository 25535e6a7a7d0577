"""Models and runs: the architecture zoo, training, runs on disk, evaluation, shipped runs."""
