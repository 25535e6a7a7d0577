"""Per sample: when it is first learned, when finally learned, and how often forgotten.

Toneva et al. (2019) count a *forgetting event* when a sample that was classified correctly is
misclassified later; samples never forgotten are easy, often-forgotten ones are ambiguous or
mislabelled, and noisy labels are learned last. Here the "later" is the next checkpoint (the
paper checks at every minibatch presentation, so these counts are a lower bound). A sample is
*finally learned* at the first checkpoint from which it stays correct to the end.

What can go wrong: with few checkpoints the counts are coarse; a sample wrong at the end has
no final-learning time (-1), and one never right no first-learning time (-1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from core.analysis import Batch, register
from core.training.checkpoints import CheckpointCapture, State, capture_checkpoints

GALLERIES = {
    "earliest": "learned earliest (finally learned first, then fewest forgetting events)",
    "latest": "learned latest (finally learned last; never learned first)",
    "forgotten": "most forgotten (most forgetting events)",
}
"""The sample galleries :func:`gallery` ranks, and what each shows."""


@dataclass(frozen=True)
class EventsOptions:
    """No options: correctness of the batch's labels at every checkpoint."""


@dataclass(frozen=True)
class LearningEvents:
    """Learning and forgetting of each sample over the checkpoints.

    Attributes:
        correct: ``[T, N]`` bool, sample ``n`` classified as its label at checkpoint ``t``.
        predicted: ``[T, N]`` int64 predicted classes.
        first_learned: ``[N]`` first checkpoint index where correct (-1: never).
        final_learned: ``[N]`` checkpoint index from which correct to the end (-1: wrong at
            the end).
        forgetting: ``[N]`` forgetting events (correct at ``t``, wrong at ``t + 1``).
        accuracy: ``[T]`` share correct at each checkpoint.
    """

    correct: np.ndarray
    predicted: np.ndarray
    first_learned: np.ndarray
    final_learned: np.ndarray
    forgetting: np.ndarray
    accuracy: np.ndarray


def events_from(correct: np.ndarray, predicted: np.ndarray | None = None) -> LearningEvents:
    """The events of a correctness sequence ``correct [T, N]`` (bool)."""
    c = np.asarray(correct, bool)
    t_count = c.shape[0]
    first = np.where(c.any(axis=0), c.argmax(axis=0), -1)
    wrong = ~c
    last_wrong = np.where(wrong.any(axis=0), t_count - 1 - wrong[::-1].argmax(axis=0), -1)
    final = np.where(c[-1], last_wrong + 1, -1)
    forgetting = (c[:-1] & ~c[1:]).sum(axis=0)
    predicted = (
        np.zeros(c.shape, np.int64) if predicted is None else np.asarray(predicted, np.int64)
    )
    return LearningEvents(
        c,
        predicted,
        first.astype(np.int64),
        final.astype(np.int64),
        forgetting.astype(np.int64),
        c.mean(axis=1).astype(np.float32),
    )


def gallery(events: LearningEvents, kind: str, k: int = 12) -> np.ndarray:
    """``[<=k]`` sample positions for the gallery ``kind`` (a key of :data:`GALLERIES`).

    Ties are broken by position, so the same events give the same gallery.
    """
    t_count = events.correct.shape[0]
    final = np.where(events.final_learned < 0, t_count, events.final_learned)
    pos = np.arange(len(final))
    if kind == "earliest":
        order = np.lexsort((pos, events.forgetting, final))
    elif kind == "latest":
        order = np.lexsort((pos, -events.forgetting, -final))
    elif kind == "forgotten":
        order = np.lexsort((pos, -final, -events.forgetting))
        order = order[events.forgetting[order] > 0]
    else:
        raise ValueError(f"No gallery {kind!r}: use one of {', '.join(GALLERIES)}.")
    return order[:k]


@register(
    "training.learning_events",
    family="training",
    title="Learning and forgetting events",
    options=EventsOptions,
)
def learning_events(
    model: nn.Module,
    batch: Batch,
    options: EventsOptions,
    *,
    checkpoints: Sequence[State] = (),
    captured: CheckpointCapture | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LearningEvents:
    """Each sample's learning and forgetting over the checkpoints (see the module);
    ``captured``: the batch's capture at ``checkpoints``, if already made."""
    if captured is None:
        captured = capture_checkpoints(model, batch, checkpoints, [], progress)
    predicted = captured.logits.argmax(axis=2)
    return events_from(predicted == np.asarray(batch.labels)[None], predicted)


def learned_when(events: LearningEvents, epochs: np.ndarray, mask: np.ndarray) -> float:
    """Mean fractional epoch at which the samples ``mask [N]`` are finally learned (those
    never learned count as after the last checkpoint: ``epochs[-1] + 1``); NaN for none."""
    if not mask.any():
        return float("nan")
    final = events.final_learned[mask]
    at = np.where(final >= 0, np.asarray(epochs)[np.clip(final, 0, None)], epochs[-1] + 1)
    return float(at.mean())
