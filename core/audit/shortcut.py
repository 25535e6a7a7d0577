"""A run's two test accuracies when it was trained with a shortcut: aligned and independent.

A run trained on ``shapes`` with a :class:`core.data.datasets.Shortcut` (``colour=0.95``: in
training, colour predicts the shape 95 % of the time) is scored twice: on its ordinary test
split, where the factor is drawn independently of the label, and on the same test images
redrawn with the shortcut holding for every one (the "aligned" split). A model that learned
the shortcut scores high on the aligned split and drops on the independent one.

What can go wrong: a run without a shortcut has no aligned split (``None``); the aligned
images are regenerated from the run's config, so a run whose dataset cannot be regenerated
raises :class:`core.models.runs.RunError` from loading.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from core.data.datasets import Shortcut, adapt_images, load_dataset
from core.models.evaluation import Predictions, accuracy_text, predict
from core.models.runs import LoadedRun, RunInfo


def run_shortcut(info: RunInfo) -> Shortcut | None:
    """The shortcut a run was trained with (``None``: none recorded)."""
    return Shortcut.parse(info.config.get("shortcut"))


@dataclass(frozen=True)
class ShortcutAccuracy:
    """Test accuracy with and without the shortcut.

    Attributes:
        shortcut: what was switched on in training (``colour=0.95``).
        independent: predictions on the test split (factor independent of the label).
        aligned: predictions on the same test images with the shortcut holding.
    """

    shortcut: str
    independent: Predictions
    aligned: Predictions

    @property
    def factor(self) -> str:
        """The shortcut's factor (``colour``)."""
        return self.shortcut.partition("=")[0]

    @property
    def drop(self) -> float:
        """Aligned minus independent accuracy."""
        return self.aligned.accuracy - self.independent.accuracy

    @property
    def clear_drop(self) -> bool:
        """The two 95 % intervals do not overlap: the model does worse without the shortcut."""
        return self.aligned.accuracy_interval[0] > self.independent.accuracy_interval[1]

    def text(self) -> str:
        """Both accuracies for a caption, with their intervals and counts."""
        return (
            f"Trained with the shortcut {self.shortcut} ({self.factor} predicts the label in "
            f"training). Test accuracy where {self.factor} still predicts it (aligned): "
            f"{accuracy_text(self.aligned)}; where it does not (independent): "
            f"{accuracy_text(self.independent)}."
        )


def shortcut_accuracy(run: LoadedRun) -> ShortcutAccuracy | None:
    """Scores ``run`` on its test split and on the aligned test split (``None``: no shortcut)."""
    shortcut = run_shortcut(run.info)
    if shortcut is None:
        return None
    cfg = run.info.config
    aligned = load_dataset(
        cfg["dataset"],
        n=cfg.get("n_samples"),
        seed=cfg["seed"],
        image_size=cfg.get("image_size"),
        shortcut=replace(shortcut, aligned=True),
    )
    test = run.splits.test
    images = adapt_images(aligned.images[test], run.info.input_shape)
    return ShortcutAccuracy(
        str(shortcut),
        predict(run.model, run.dataset.images[test], run.dataset.labels[test]),
        predict(run.model, images, aligned.labels[test]),
    )
