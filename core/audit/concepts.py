"""Concept tests: does a human concept ("red", "striped", a folder of examples) push a class?

Kim et al. 2018 (TCAV): a concept activation vector (CAV) at a layer separates the activations
of concept images from those of random images; the TCAV score of a class is the share of that
class's images whose target logit grows along the CAV (positive directional derivative). A CAV
from any random set scores something too, so the concept is compared with CAVs of random
counterparts: ``n_random`` concept-vs-random CAVs (the concept against random sets ``R_1..R_n``)
against ``n_random`` random-vs-random CAVs (``R_{j-1}`` against ``R_j``: distinct pairs),
with a two-sided t-test (:func:`scipy.stats.ttest_ind`); a layer where ``p >= alpha`` is marked
"not significant".

Two ways to get a CAV: ``fastcav`` (the default; Schnoor et al., ICML 2025): the difference of
the two sets' mean activations, no classifier trained, all scores from one gradient pass per
layer. ``tcav``: captum's :class:`captum.concept.TCAV` (a linear classifier per CAV), given a
temporary directory for its activation and CAV files that is deleted afterwards, so no CAV of
another model or image set is ever read back (captum#776, #918).

Concepts come from a recorded factor of the batch (``colour`` = ``red``: the batch's red
images) or from one subfolder of a user's image folder (``folder``/``concept``, read with
:func:`core.data.folder.load_image_folder`; a path must lie in the data folders). Random sets
are drawn from the batch's other images.

What can go wrong: a concept with fewer than two images, or a class with none in the batch
(``ValueError``); scores that are all equal give no t statistic: ``p`` is NaN and the layer is
not significant. Significance over several layers and concepts is not corrected for multiple
comparisons; one seed is one draw of the random sets.
"""

from __future__ import annotations

import random
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.stats import ttest_ind
from torch import nn

from core.activations import capture_dataset
from core.analysis import Batch, register
from core.device import model_device
from core.hooks import model_lock

ConceptMethod = Literal["fastcav", "tcav"]
CONCEPT_METHODS = {
    "fastcav": "FastCAV (difference of means)",
    "tcav": "TCAV (captum, linear classifier)",
}
"""Method name -> what a reader calls it."""
ALPHA = 0.05
"""Significance level of the t-test against random CAVs."""
NOT_SIGNIFICANT = "not significant"
MAX_LAYERS = 4
"""Layers a concept test covers by default: evenly spread over depth, the deepest included."""


@dataclass(frozen=True)
class ConceptOptions:
    """Which concept, class and layers to test, and how."""

    factor: str = "colour"  # the batch factor that defines the concept (unused with a folder)
    value: int = 0  # the factor's category code (colour 0: red)
    folder: str = ""  # a user's image folder (one subfolder per concept); "" uses the factor
    concept: str = ""  # the folder's subfolder holding the concept's images
    target: int = 0  # the class whose logit is differentiated
    layers: tuple[str, ...] = ()  # layers, shallow to deep; (): default_layers(model)
    method: ConceptMethod = "fastcav"
    n_random: int = 10  # random counterpart sets (Kim et al.: at least 10)
    set_size: int = 50  # images per concept / random set
    n_inputs: int = 100  # images of the target class scored
    alpha: float = ALPHA
    seed: int = 0  # seed of the concept, random and input samples


@dataclass(frozen=True)
class ConceptTest:
    """TCAV scores of a concept at ``L`` layers, against ``R`` random counterparts.

    Attributes:
        concept: what the concept is (``colour=red``, ``folder:stripes``).
        target: the class tested.
        method: ``fastcav`` or ``tcav``.
        layers: ``[L]`` layer names.
        scores: ``[L, R]`` TCAV score of each concept-vs-random CAV.
        random_scores: ``[L, R]`` TCAV score of each random-vs-random CAV.
        p_values: ``[L]`` two-sided t-test of ``scores`` against ``random_scores``.
        alpha: significance level.
        n_concept: concept images used.
        n_inputs: target-class images scored.
    """

    concept: str
    target: int
    method: str
    layers: tuple[str, ...]
    scores: np.ndarray
    random_scores: np.ndarray
    p_values: np.ndarray
    alpha: float
    n_concept: int
    n_inputs: int

    @property
    def significant(self) -> np.ndarray:
        """``[L]`` bool: ``p < alpha`` (NaN p: not significant)."""
        return np.nan_to_num(self.p_values, nan=1.0) < self.alpha

    @property
    def mean(self) -> np.ndarray:
        """``[L]`` mean concept score."""
        return self.scores.mean(axis=1)

    @property
    def random_mean(self) -> np.ndarray:
        """``[L]`` mean random score."""
        return self.random_scores.mean(axis=1)

    def verdicts(self) -> tuple[str, ...]:
        """``[L]`` ``"significant"`` or :data:`NOT_SIGNIFICANT`."""
        return tuple("significant" if s else NOT_SIGNIFICANT for s in self.significant)


def default_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[str]:
    """The report card's ladder without the input and the logits (where CAVs make sense)."""
    from core.projections.report_card import report_layers

    ladder = report_layers(model, input_shape)
    inner = [name for name in ladder[1:-1] if "(CLS)" not in name] or ladder[-1:]
    picks = np.linspace(len(inner) - 1, 0, min(MAX_LAYERS, len(inner))).round().astype(int)
    return [inner[i] for i in sorted(set(picks.tolist()))]


def fastcav(concept: np.ndarray, random: np.ndarray) -> np.ndarray:
    """FastCAV: ``mean(concept) - mean(random)`` over ``[N, D]`` activations, unit length."""
    cav = concept.mean(axis=0, dtype=np.float64) - random.mean(axis=0, dtype=np.float64)
    norm = np.linalg.norm(cav)
    return cav / norm if norm > 0 else cav


def tcav_score(gradients: np.ndarray, cav: np.ndarray) -> float:
    """Share of ``[N, D]`` gradients with a positive directional derivative along ``cav [D]``."""
    return float((gradients @ cav > 0).mean())


def t_test(scores: np.ndarray, random_scores: np.ndarray) -> float:
    """Two-sided pooled-variance t-test p-value; NaN when both sets are constant."""
    if np.ptp(scores) == 0 and np.ptp(random_scores) == 0:
        return float("nan")
    with warnings.catch_warnings():  # one constant set: scipy warns of precision, p is right
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ttest_ind(scores, random_scores).pvalue)


def _sample(rng: np.random.Generator, pool: np.ndarray, size: int) -> np.ndarray:
    return np.sort(rng.choice(pool, size=min(size, len(pool)), replace=False))


def _concept_images(batch: Batch, options: ConceptOptions) -> tuple[str, np.ndarray, np.ndarray]:
    """``(name, concept images [M, C, H, W], pool of batch indices for random sets)``."""
    if options.folder:
        from core.data.folder import check_inside, load_image_folder
        from core.data.uploads import data_roots

        c, h, _ = batch.images.shape[1:]
        folder = check_inside(options.folder, data_roots())
        data = load_image_folder(folder, image_size=h, channels=c).dataset
        if options.concept not in data.info.class_names:
            raise ValueError(f"{folder.name} has no concept folder {options.concept!r}.")
        own = data.labels == data.info.class_names.index(options.concept)
        return f"folder:{options.concept}", data.images[own], np.arange(len(batch))
    if options.factor not in batch.factors:
        raise ValueError(f"These images record no factor {options.factor!r}.")
    codes = np.asarray(batch.factors[options.factor])
    inside = np.flatnonzero(codes == options.value)
    return (
        f"{options.factor}={options.value}",
        batch.images[inside],
        np.flatnonzero(codes != options.value),
    )


def _gradients(
    model: nn.Module, images: np.ndarray, layers: tuple[str, ...], target: int
) -> dict[str, np.ndarray]:
    """``{layer: [N, D]}`` gradient of the ``target`` logit with respect to each layer's output,
    from one forward and one backward pass."""
    from core.activations import first_tensor
    from core.hooks import forward_hooks

    kept: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            tensor = first_tensor(output)
            if tensor is not None and name not in kept:
                tensor.retain_grad()
                kept[name] = tensor

        return hook

    x = torch.as_tensor(images).to(model_device(model)).requires_grad_(True)  # every layer
    with forward_hooks(model, {layer: keep(layer) for layer in layers}), torch.enable_grad():
        model(x)[:, target].sum().backward()
    return {
        layer: kept[layer].grad.reshape(len(images), -1).cpu().numpy().astype(np.float64)
        for layer in layers
    }


def _fast_scores(
    model: nn.Module,
    concept: np.ndarray,
    randoms: list[np.ndarray],
    inputs: np.ndarray,
    layers: tuple[str, ...],
    target: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, np.ndarray]:
    r = len(randoms) - 1
    scores = np.empty((len(layers), r))
    random_scores = np.empty((len(layers), r))
    grads = _gradients(model, inputs, layers, target)
    images = np.concatenate([concept, *randoms])
    sizes = np.cumsum([len(concept), *(len(s) for s in randoms)])[:-1]
    captured = capture_dataset(model, images, list(layers)).arrays
    for i, layer in enumerate(layers):
        parts = np.split(captured.pop(layer).reshape(len(images), -1), sizes)
        for j in range(r):
            scores[i, j] = tcav_score(grads[layer], fastcav(parts[0], parts[j + 2]))
            random_scores[i, j] = tcav_score(grads[layer], fastcav(parts[j + 1], parts[j + 2]))
        if progress is not None:
            progress(i + 1, len(layers))
    return scores, random_scores


class _Images(torch.utils.data.Dataset):
    """Images as a torch dataset, for captum's concept loaders."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def _captum_scores(
    model: nn.Module,
    concept: np.ndarray,
    randoms: list[np.ndarray],
    inputs: np.ndarray,
    layers: tuple[str, ...],
    target: int,
    seed: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """captum's TCAV, its files in a temporary directory deleted on the way out."""
    from captum.concept import TCAV, Concept
    from captum.concept._utils.data_iterator import dataset_to_dataloader

    device = model_device(model)
    sets = [concept, *randoms]
    concepts = [
        Concept(
            k,
            "concept" if k == 0 else f"random{k - 1}",
            dataset_to_dataloader(
                _Images(torch.as_tensor(images).to(device)), batch_size=len(images)
            ),
        )
        for k, images in enumerate(sets)
    ]
    r = len(randoms) - 1
    pairs = [(0, j + 2) for j in range(r)] + [(j + 1, j + 2) for j in range(r)]
    with (
        tempfile.TemporaryDirectory(prefix="layerscope-tcav-") as tmp,
        model_lock(model),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", UserWarning)  # captum's notes on its default classifier
        torch.manual_seed(seed)
        shuffled = random.getstate()  # captum's classifier shuffles with Python's own random
        random.seed(seed)
        try:
            tcav = TCAV(model, list(layers), save_path=tmp, model_id="this-run")
            out = tcav.interpret(
                torch.as_tensor(inputs).to(device),
                [[concepts[a], concepts[b]] for a, b in pairs],
                target=target,
                processes=None,
            )
        finally:
            random.setstate(shuffled)
    scores = np.empty((len(layers), 2, r))
    for k, (a, b) in enumerate(pairs):
        for i, layer in enumerate(layers):
            scores[i, k // r, k % r] = float(out[f"{a}-{b}"][layer]["sign_count"][0])
    if progress is not None:
        progress(1, 1)
    return scores[:, 0], scores[:, 1]


@register("audit.concept_test", "audit", "Concept test (TCAV)", ConceptOptions)
def concept_test(
    model: nn.Module,
    batch: Batch,
    options: ConceptOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> ConceptTest:
    """Tests whether a concept moves ``options.target``'s logit more than random directions.

    Args:
        model: a classifier returning logits.
        batch: ``[N, C, H, W]`` images with labels (and the factor, for a factor concept); the
            target's images are scored, the other images make the random sets.
        options: concept, class, layers, method, counts and seed (:class:`ConceptOptions`).
        progress: called as ``progress(done, total)`` per layer (once for ``tcav``).

    Returns:
        A :class:`ConceptTest` with ``[L, n_random]`` scores for concept and random CAVs.

    Raises:
        ValueError: fewer than two concept images, random images or target-class images.
    """
    rng = np.random.default_rng(options.seed)
    name, concept, pool = _concept_images(batch, options)
    concept = concept[_sample(rng, np.arange(len(concept)), options.set_size)]
    randoms = [
        batch.images[_sample(rng, pool, options.set_size)] for _ in range(options.n_random + 1)
    ]
    own = np.flatnonzero(np.asarray(batch.labels) == options.target)
    inputs = batch.images[_sample(rng, own, options.n_inputs)]
    if len(concept) < 2 or len(pool) < 2 or len(inputs) < 1 or options.n_random < 2:
        raise ValueError(
            f"A concept test needs 2+ concept images ({len(concept)}), 2+ other images "
            f"({len(pool)}), images of the class ({len(inputs)}) and 2+ random sets."
        )
    layers = options.layers or tuple(default_layers(model, batch.images.shape[1:]))
    if options.method == "tcav":
        scores, random_scores = _captum_scores(
            model, concept, randoms, inputs, layers, options.target, options.seed, progress
        )
    else:
        scores, random_scores = _fast_scores(
            model, concept, randoms, inputs, layers, options.target, progress
        )
    p_values = np.array([t_test(s, r) for s, r in zip(scores, random_scores, strict=True)])
    return ConceptTest(
        concept=name,
        target=options.target,
        method=options.method,
        layers=tuple(layers),
        scores=scores,
        random_scores=random_scores,
        p_values=p_values,
        alpha=options.alpha,
        n_concept=len(concept),
        n_inputs=len(inputs),
    )
