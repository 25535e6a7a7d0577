"""The audit of one run: every section's numbers, tables and plain-sentence findings.

:func:`build_audit` loads a run and makes each section in turn, most of them by calling a
registered analysis (``core.analysis.get``) on a fixed set of images: accuracy and confusion
(``models.predictions``, and the aligned test split of a shortcut run), slices
(``audit.slices``), concept tests (``audit.concept_test``, the shortcut's factor, or the first
factor, value ``class % values`` for each class), the layer report card (the stored
``projections.layer_report`` of the shipped views, computed if missing), attributions with
their sanity-check verdicts (``attributions.sanity_check``) and deletion/insertion curves
(``attributions.faithfulness``, batched). Every setting and seed is in :class:`AuditSettings`
and listed in the report; the same run and settings give the same numbers.

A section that cannot be made (a run folder without weights, a model an analysis does not
apply to, a dataset without factors) is kept with the reason instead of its numbers, and the
findings say so: the audit never stops at the first failure. Stop requests from a progress
callback (an exception it raises that is not one of the errors below) do stop it.

:mod:`core.audit.html` turns an :class:`Audit` into ``report.html`` and ``evidence.zip``.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

import numpy as np

from core.analysis import Batch, Inputs, get
from core.models.runs import LoadedRun, RunError, find_run, inputs_batch, load_run, read_run

PROBLEMS = (RunError, ValueError, RuntimeError, KeyError, OSError, TypeError, IndexError)
"""Errors that make a section impossible (reported), rather than stop the audit."""
LIBRARIES = ("torch", "torchvision", "captum", "numpy", "scipy", "scikit-learn", "plotly")


@dataclass(frozen=True)
class AuditSettings:
    """Everything an audit depends on besides the run: listed in the report."""

    split: str = "test"  # images of the accuracy, confusion and slices
    concept_split: str = "val"  # images of the concept tests (concept, random and class sets)
    concept_method: str = "fastcav"  # fastcav or tcav (captum)
    n_random: int = 10  # random counterpart sets per concept
    set_size: int = 50  # images per concept / random set
    concept_inputs: int = 100  # class images scored per concept test
    attribution_samples: tuple[int, ...] = (0, 1, 2)  # validation positions, fixed
    sanity_steps: int = 3  # randomisation steps of each sanity check (the verdict is the last)
    faithfulness_n: int = 100  # validation images of the deletion/insertion curves
    faithfulness_methods: tuple[str, ...] = ("saliency", "grad_cam")
    faithfulness_orders: int = 1  # random pixel orders per image (averaged over the images)
    faithfulness_chunk: int = 25  # images attributed at once (bounds memory)
    seed: int = 0  # every sample, random set and random order


@dataclass(frozen=True)
class Table:
    """One table of the report (also written as ``<name>.csv``)."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


@dataclass
class Section:
    """One part of the report: its tables, the results its charts draw, or why it is missing."""

    key: str
    title: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None


@dataclass(frozen=True)
class Finding:
    """A sentence of the cover, and the section (anchor) that holds its evidence."""

    text: str
    section: str


@dataclass
class Audit:
    """A whole audit: what was audited, with which settings, and each section."""

    run: str
    settings: AuditSettings
    meta: dict[str, Any]
    sections: list[Section]
    findings: list[Finding]


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dataset_sha256(run: LoadedRun) -> str:
    """SHA-256 of the images (float32), labels and factors (by name) the run is audited on."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(run.dataset.images, np.float32).tobytes())
    h.update(np.ascontiguousarray(run.dataset.labels, np.int64).tobytes())
    for name in sorted(run.dataset.factors):
        h.update(name.encode())
        h.update(np.ascontiguousarray(run.dataset.factors[name], np.int64).tobytes())
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Python and the libraries the numbers depend on."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# --- sections ----------------------------------------------------------------------------------


def _accuracy(run: LoadedRun, s: AuditSettings) -> Section:
    from core.audit.shortcut import shortcut_accuracy
    from core.models.evaluation import PredictionOptions

    analysis = get("models.predictions")
    batch = inputs_batch(run, Inputs(split=s.split))
    pred = analysis.function(run.model, batch, PredictionOptions())
    rows = [(f"{s.split} (independent)", pred)]
    shortcut = shortcut_accuracy(run) if s.split == "test" else None
    if shortcut is not None:
        rows.append((f"test, {shortcut.factor} aligned with the label", shortcut.aligned))
    table = Table(
        "accuracy",
        ("images", "n", "correct", "accuracy", "ci95_low", "ci95_high", "chance"),
        tuple(
            (name, p.n, p.correct, p.accuracy, *p.accuracy_interval, p.chance_accuracy)
            for name, p in rows
        ),
    )
    classes = run.info.dataset.class_names
    confusion = Table(
        "confusion",
        ("true \\ predicted", *classes),
        tuple((c, *row) for c, row in zip(classes, pred.confusion.tolist(), strict=True)),
    )
    return Section(
        "accuracy",
        "Accuracy and confusion",
        f"{analysis.title} on the {s.split} split; 95 % Wilson intervals.",
        [table, confusion],
        {"predictions": pred, "shortcut": shortcut, "classes": classes},
    )


def _slices(run: LoadedRun, s: AuditSettings, predictions: Any = None) -> Section:
    from core.audit.slices import slice_scores

    analysis = get("audit.slices")
    batch = inputs_batch(run, Inputs(split=s.split))
    if predictions is None:
        result = analysis.function(run.model, batch, analysis.options())
    else:  # the accuracy section's predictions of the same images: the same numbers, no pass
        result = slice_scores(predictions.predicted, predictions.probs, batch.labels, batch.factors)
    categories = {f.name: f.categories for f in run.info.dataset.factors}
    names = result.names(categories, run.info.dataset.class_names)
    table = Table(
        "slices",
        ("slice", "n", "correct", "accuracy", "ci95_low", "ci95_high", "mean_confidence"),
        tuple(
            (
                names[i],
                int(result.count[i]),
                int(result.correct[i]),
                float(result.accuracy[i]),
                float(result.low[i]),
                float(result.high[i]),
                float(result.confidence[i]),
            )
            for i in range(len(names))
        ),
    )
    return Section(
        "slices",
        analysis.title,
        f"Per class and per value of every factor on the {s.split} split, worst first.",
        [table],
        {"slices": result, "names": names},
    )


def concept_factor(run: LoadedRun) -> str | None:
    """The factor whose values the audit tests as concepts: the shortcut's, else the first."""
    from core.audit.shortcut import run_shortcut

    shortcut = run_shortcut(run.info)
    factors = [f.name for f in run.info.dataset.factors]
    if shortcut is not None:
        return shortcut.factor
    return factors[0] if factors else None


def _concepts(run: LoadedRun, s: AuditSettings, progress: Callable[[float], None]) -> Section:
    from core.audit.concepts import ALPHA, ConceptOptions, default_layers

    analysis = get("audit.concept_test")
    factor = concept_factor(run)
    if factor is None:
        raise ValueError("the dataset records no factors, so no concept comes free with it")
    categories = next(f.categories for f in run.info.dataset.factors if f.name == factor)
    classes = run.info.dataset.class_names
    batch = inputs_batch(run, Inputs(split=s.concept_split))
    layers = tuple(default_layers(run.model, run.info.input_shape))
    alpha = ALPHA / (len(classes) * len(layers))  # Bonferroni over every test of the section
    tests, rows = [], []
    for target, name in enumerate(classes):
        value = target % len(categories)
        options = ConceptOptions(
            factor=factor,
            value=value,
            target=target,
            method=s.concept_method,
            n_random=s.n_random,
            set_size=s.set_size,
            n_inputs=s.concept_inputs,
            layers=layers,
            alpha=alpha,
            seed=s.seed,
        )
        test = analysis.function(run.model, batch, options)
        tests.append((f"{factor}={categories[value]}", name, test))
        for i, layer in enumerate(test.layers):
            rows.append(
                (
                    f"{factor}={categories[value]}",
                    name,
                    layer,
                    float(test.mean[i]),
                    float(test.scores[i].std()),
                    float(test.random_mean[i]),
                    float(test.random_scores[i].std()),
                    float(test.p_values[i]),
                    test.verdicts()[i],
                )
            )
        progress((target + 1) / len(classes))
    table = Table(
        "concepts",
        (
            "concept",
            "class",
            "layer",
            "tcav_mean",
            "tcav_sd",
            "random_mean",
            "random_sd",
            "p_value",
            "verdict",
        ),
        tuple(rows),
    )
    text = (
        f"{analysis.title}: for each class, the {factor} it would be tied to by a shortcut "
        f"(class i: value i mod {len(categories)}) against {s.n_random} random sets of "
        f"{s.set_size} {s.concept_split} images; method {s.concept_method}; two-sided t-test "
        f"at alpha {ALPHA:g} / {len(classes) * len(layers)} tests = {alpha:.2g} (Bonferroni)."
    )
    return Section("concepts", "Concept tests (TCAV)", text, [table], {"tests": tests})


def _report_card(run: LoadedRun, progress: Callable[[float], None]) -> Section:
    from core.models import precompute
    from core.projections.report_card import LayerReport

    args = precompute.report_args(run, precompute.REPORT_N, "trained", precompute.SEED)
    report = precompute.stored(
        run,
        "report",
        args,
        LayerReport,
        lambda: precompute.report(
            run, precompute.REPORT_N, "trained", progress=lambda d, t: progress(d / max(t, 1))
        ).without_grams(),
    )
    rows = tuple(
        (
            layer,
            target,
            float(report.probe[i, j].mean()),
            float(report.knn[i, j].mean()),
            float(report.chance[j]),
        )
        for i, layer in enumerate(report.layers)
        for j, target in enumerate(report.targets)
    )
    return Section(
        "report_card",
        get("projections.layer_report").title,
        f"Linear-probe and k-NN accuracy per layer for the label and each factor "
        f"({precompute.REPORT_N} held-out images, seed {precompute.SEED}, mean over splits).",
        [Table("report_card", ("layer", "target", "probe", "knn", "chance"), rows)],
    )


def _attributions(run: LoadedRun, s: AuditSettings, progress: Callable[[float], None]) -> Section:
    from core.attributions.sanity import VERDICT_MEANING, SanityOptions

    analysis = get("attributions.sanity_check")
    rows, checks = [], []
    for k, position in enumerate(s.attribution_samples):
        batch = inputs_batch(run, Inputs.sample(position))
        check = analysis.function(run.model, batch, SanityOptions(steps=s.sanity_steps))
        checks.append((position, check))
        for j, method in enumerate(check.methods):
            rows.append(
                (
                    position,
                    run.info.dataset.class_names[check.target],
                    method,
                    float(check.final_similarity[j]),
                    check.verdicts[j],
                    VERDICT_MEANING[check.verdicts[j]],
                )
            )
        progress((k + 1) / len(s.attribution_samples))
    table = Table(
        "sanity_checks",
        ("val_sample", "explained_class", "method", "final_similarity", "verdict", "meaning"),
        tuple(rows),
    )
    rule = checks[0][1].rule_text if checks else ""
    text = (
        f"Cascading model randomisation (Adebayo et al. 2018) of fixed validation samples. {rule}"
    )
    return Section(
        "attributions", "Attributions and sanity checks", text, [table], {"checks": checks}
    )


def _faithfulness(run: LoadedRun, s: AuditSettings, progress: Callable[[float], None]) -> Section:
    from core.activations import list_layers
    from core.attributions.faithfulness import FaithfulnessOptions
    from core.attributions.methods import supported_methods

    analysis = get("attributions.faithfulness")
    supported = supported_methods(list_layers(run.model, run.info.input_shape))
    methods = [m for m in s.faithfulness_methods if m in supported]
    if not methods:
        raise ValueError("none of the methods applies to this model")
    batch = inputs_batch(run, Inputs(split="val", n=s.faithfulness_n, seed=s.seed))
    rows, per_image = [], []
    chunks = range(0, len(batch), s.faithfulness_chunk)
    for m, method in enumerate(methods):
        options = FaithfulnessOptions(
            method=method, orders=s.faithfulness_orders, order_seed=s.seed
        )
        aucs = []
        for c, start in enumerate(chunks):
            part = slice(start, start + s.faithfulness_chunk)
            sub = Batch(batch.images[part], batch.labels[part], {}, batch.class_names)
            curves = analysis.function(run.model, sub, options)
            aucs.append(
                np.stack(
                    [
                        curves.deletion_auc,
                        curves.random_deletion_auc,
                        curves.insertion_auc,
                        curves.random_insertion_auc,
                    ],
                    axis=1,
                )
            )
            progress((m * len(chunks) + c + 1) / (len(methods) * len(chunks)))
        auc = np.concatenate(aucs)
        per_image += [(method, i, *map(float, a)) for i, a in enumerate(auc)]
        mean, sd = auc.mean(axis=0), auc.std(axis=0)
        beats_del, beats_ins = bool(mean[0] < mean[1]), bool(mean[2] > mean[3])
        rows.append((method, len(auc), *map(float, mean), *map(float, sd), beats_del, beats_ins))
    columns = ("deletion_auc", "random_deletion_auc", "insertion_auc", "random_insertion_auc")
    summary = Table(
        "faithfulness",
        (
            "method",
            "n",
            *columns,
            *(f"{c}_sd" for c in columns),
            "beats_random_deletion",
            "beats_random_insertion",
        ),
        tuple(rows),
    )
    images = Table("faithfulness_per_image", ("method", "image", *columns), tuple(per_image))
    text = (
        f"{analysis.title}: deletion (to black) and insertion (from blur) curves of "
        f"{len(batch)} validation images (class-stratified, seed {s.seed}), "
        f"{s.faithfulness_chunk} at a time, against random pixel orders."
    )
    return Section("faithfulness", "Deletion and insertion", text, [summary, images])


# --- findings ----------------------------------------------------------------------------------


def _findings(sections: Sequence[Section]) -> list[Finding]:
    out: list[Finding] = []
    by_key = {s.key: s for s in sections}
    acc = by_key.get("accuracy")
    if acc is not None and not acc.problem:
        pred, shortcut = acc.data["predictions"], acc.data["shortcut"]
        low, high = pred.accuracy_interval
        out.append(
            Finding(
                f"Test accuracy is {_pct(pred.accuracy)} (95 % CI {_pct(low)}–{_pct(high)}, "
                f"n = {pred.n:,}).",
                "accuracy",
            )
        )
        if shortcut is not None:
            a, i = shortcut.aligned.accuracy, shortcut.independent.accuracy
            if shortcut.clear_drop:
                text = (
                    f"Accuracy drops from {_pct(a)} to {_pct(i)} when {shortcut.factor} no "
                    f"longer predicts the label (test images with the {shortcut.factor} aligned "
                    f"to the label vs independent of it; trained with shortcut "
                    f"{shortcut.shortcut}): the model relies on {shortcut.factor}."
                )
            else:
                text = (
                    f"No clear accuracy drop without the {shortcut.factor} shortcut: {_pct(a)} "
                    f"aligned vs {_pct(i)} independent (95 % intervals overlap)."
                )
            out.append(Finding(text, "accuracy"))
    sl = by_key.get("slices")
    if sl is not None and not sl.problem:
        result, names = sl.data["slices"], sl.data["names"]
        bad = [i for i in range(len(names)) if result.below_overall[i]][:3]
        if bad:
            worst = "; ".join(
                f"{names[i]}: {_pct(result.accuracy[i])} (n = {result.count[i]:,})" for i in bad
            )
            out.append(
                Finding(
                    f"The model fails most on {worst}, against {_pct(result.overall)} overall "
                    "(each slice's whole 95 % interval lies below it).",
                    "slices",
                )
            )
        else:
            out.append(Finding("No slice is clearly worse than the overall accuracy.", "slices"))
    co = by_key.get("concepts")
    if co is not None and not co.problem:
        hits = [
            (concept, cls, t)
            for concept, cls, t in co.data["tests"]
            if t.significant.any() and (t.mean[t.significant] > t.random_mean[t.significant]).any()
        ]
        for concept, cls, t in hits:
            up = t.significant & (t.mean > t.random_mean)
            j = int(np.flatnonzero(up)[-1])
            out.append(
                Finding(
                    f"{concept} is a significant concept for class {cls} at {int(up.sum())} of "
                    f"{len(t.layers)} layers (at {t.layers[j]}: TCAV {t.mean[j]:.2f} vs random "
                    f"{t.random_mean[j]:.2f}, p = {t.p_values[j]:.2g}).",
                    "concepts",
                )
            )
        if not hits:
            out.append(
                Finding(
                    "No tested concept raises its class significantly above random directions.",
                    "concepts",
                )
            )
    at = by_key.get("attributions")
    if at is not None and not at.problem:
        from core.attributions.methods import METHODS
        from core.attributions.sanity import FAILS

        verdicts: dict[str, list[str]] = {}
        for _, check in at.data["checks"]:
            for method, verdict in zip(check.methods, check.verdicts, strict=True):
                verdicts.setdefault(method, []).append(verdict)
        for method, vs in verdicts.items():
            fails = vs.count(FAILS)
            state = "fails" if fails else "passes"
            count = f"{fails} of {len(vs)}" if fails else f"all {len(vs)}"
            out.append(
                Finding(
                    f"{METHODS.get(method, method)} {state} the randomisation check on {count} "
                    "samples.",
                    "attributions",
                )
            )
    fa = by_key.get("faithfulness")
    if fa is not None and not fa.problem:
        from core.attributions.methods import METHODS

        for row in fa.tables[0].rows:
            method, n, d, rd, ins, ri = row[:6]
            beats = "beats" if row[-2] and row[-1] else "does not beat"
            out.append(
                Finding(
                    f"{METHODS.get(method, method)} {beats} random pixel orders: deletion AUC "
                    f"{d:.3f} vs {rd:.3f}, insertion AUC {ins:.3f} vs {ri:.3f} (n = {n}).",
                    "faithfulness",
                )
            )
    for s in sections:
        if s.problem:
            out.append(Finding(f"{s.title} could not be made: {s.problem}", s.key))
    return out


def _predictions(sections: Sequence[Section]) -> Any:
    """The accuracy section's predictions, if it was made."""
    made = [s for s in sections if s.key == "accuracy" and not s.problem]
    return made[0].data["predictions"] if made else None


# --- the audit ---------------------------------------------------------------------------------

SECTIONS = (
    ("accuracy", "Accuracy and confusion", 1),
    ("slices", "Slices", 1),
    ("concepts", "Concept tests (TCAV)", 3),
    ("report_card", "Layer report card", 2),
    ("attributions", "Attributions and sanity checks", 4),
    ("faithfulness", "Deletion and insertion", 4),
)
"""Key, title and rough relative cost of each section (for the progress bar)."""


def build_audit(
    name: str,
    settings: AuditSettings | None = None,
    *,
    roots: Sequence[Any] | None = None,
    loaded: LoadedRun | None = None,
    progress: Callable[[int, int], None] | None = None,
    status: Callable[[str], None] | None = None,
) -> Audit:
    """Audits run ``name``: every section, its findings, the settings and the provenance.

    Args:
        name: the run (see :func:`core.models.runs.find_run`).
        settings: what to compute (default :class:`AuditSettings`).
        roots: where runs live (default the usual roots).
        loaded: the run, when already loaded (the app's shared copy); else it is loaded here.
        progress: called as ``progress(done, total)`` (thousandths of the whole audit).
        status: called with the title of each section as it starts.

    Returns:
        An :class:`Audit`; sections that could not be made carry their reason.

    Raises:
        RunError: no run of that name, or its ``run.json`` cannot be read.
    """
    s = settings or AuditSettings()
    roots = list(roots) if roots else None
    info = read_run(find_run(name, roots))
    weights = info.path / "model.safetensors"
    meta: dict[str, Any] = {
        "run": info.name,
        "run_config": info.config,
        "dataset": asdict(info.dataset),
        "status": info.status,
        "weights_file_sha256": _sha256(weights.read_bytes()) if weights.is_file() else None,
        "weights_state_sha256": info.weights_sha256,
        "settings": asdict(s),
        "versions": versions(),
    }
    total = sum(cost for *_, cost in SECTIONS)
    done = 0

    def tell(fraction: float, cost: int) -> None:
        if progress is not None:
            progress(round(1000 * (done + cost * min(fraction, 1.0)) / total), 1000)

    tell(0, 0)
    run: LoadedRun | None = None
    failure = ""
    try:
        run = loaded or load_run(name, roots, device="cpu")
        meta["dataset_sha256"] = dataset_sha256(run)
    except PROBLEMS as err:
        failure = f"the run cannot be loaded ({err})"
    makers: dict[str, Callable[..., Section]] = {
        "accuracy": lambda r, p: _accuracy(r, s),
        "slices": lambda r, p: _slices(r, s, _predictions(sections)),
        "concepts": lambda r, p: _concepts(r, s, p),
        "report_card": lambda r, p: _report_card(r, p),
        "attributions": lambda r, p: _attributions(r, s, p),
        "faithfulness": lambda r, p: _faithfulness(r, s, p),
    }
    sections: list[Section] = []
    for key, title, cost in SECTIONS:
        if status is not None:
            status(title)
        if run is None:
            section = Section(key, title, problem=failure)
        else:
            try:
                section = makers[key](run, lambda f, c=cost: tell(f, c))
            except PROBLEMS as err:
                section = Section(key, title, problem=f"{type(err).__name__}: {err}")
        sections.append(section)
        done += cost
        tell(0, 0)
    return Audit(info.name, s, meta, sections, _findings(sections))
