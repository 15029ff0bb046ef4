"""Training and evaluating the intent router (no database: the services in
``chat.services.intents`` add the agents' rows and keep the versions).

The recipe (the shipped ``router-1`` is exactly this on ``training_rows()``:
``intents_train.jsonl`` plus ``questions_dev.jsonl`` as ``answer`` rows):

1. Features: TF-IDF of word 1-2-grams and of character 2-5-grams within words (both
   fitted on the training texts, terms seen at least twice, sublinear term frequency,
   unit length), beside the message's unit MiniLM embedding (all-MiniLM-L6-v2, 384
   numbers, the retrieval encoder unchanged).
2. A multinomial logistic regression (L2, C=16, lbfgs) on all three blocks.
3. Thresholds calibrated on 5-fold out-of-fold probabilities of the training rows (never
   on the evaluation part): one threshold for the critical categories (medical, safety,
   security), one for the other escalating categories and one for the escalating
   categories together, chosen on a small grid to escalate at least 99% of the critical
   rows and then to maximise the smaller of escalate-or-not precision and recall.

VADER's score, exclamation marks and capitals were tried beside the embedding and made
escalate-or-not precision worse on the training folds: they are not features (see
``docs/intents.md``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chat.assistant.contract import Intent
from chat.assistant.router import (
    CRITICAL,
    DEFAULT_POLICIES,
    ESCALATING,
    LABELS,
    META,
    VOCABULARY,
    WEIGHTS,
    CategoryPolicy,
    RouterModel,
    intent_route,
)

DATASETS_DIR = Path(__file__).resolve().parent / "datasets"
PARTS = {
    "train": "intents_train.jsonl",
    "eval": "intents_eval.jsonl",
    "challenge": "intents_challenge.jsonl",
    # The retrieval team's evaluation questions (answerable or not): all ``answer`` by
    # the guide; routing any of them elsewhere costs an answer (reported, never tuned on).
    "questions": "questions_eval.jsonl",
}
QUESTIONS_DEV = "questions_dev.jsonl"
RECIPE = "tfidf-word12-char25+minilm+logreg-C16"
C = 16.0
FOLDS = 5
SEED = 0
CRITICAL_RECALL_TARGET = 0.99
GRID_GENERAL = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
GRID_CRITICAL = (0.1, 0.15, 0.2, 0.25, 0.3)
GRID_COMBINED = (0.4, 0.45, 0.5, 0.55, 0.6)


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: str


def dataset_load(part: str) -> list[LabelledText]:
    """A shipped part: "train", "eval" (the reported evaluation part), "challenge" (an
    untouched final check, never used to choose anything) or "questions"."""
    if part == "questions":
        return _questions(DATASETS_DIR / PARTS[part])
    return dataset_load_path(DATASETS_DIR / PARTS[part])


def _questions(path: Path) -> list[LabelledText]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(LabelledText(text=json.loads(line)["question"], label="answer"))
    return rows


def training_rows() -> list[LabelledText]:
    """The shipped training data: ``intents_train.jsonl`` plus the retrieval team's
    development questions (``questions_dev.jsonl``: paraphrased questions about
    Brightwave, answerable or not, by a third author) as ``answer`` rows. The guide
    labels such questions ``answer`` (also the unanswerable ones); without them one
    answerable question in thirteen was sent to a person or declined."""
    return [*dataset_load("train"), *_questions(DATASETS_DIR / QUESTIONS_DEV)]


def dataset_load_path(path: Path) -> list[LabelledText]:
    """Rows of a JSON-lines file of {"text", "label"}."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                item = json.loads(line)
                rows.append(LabelledText(text=item["text"], label=item["label"]))
    return rows


def rows_fingerprint(rows: Sequence[LabelledText]) -> str:
    """sha256 of the rows (text and label, in order): which data a figure was measured on."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps([row.text, row.label]).encode())
        digest.update(b"\n")
    return digest.hexdigest()


# --- evaluation -----------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """What ``manage.py intents_eval`` prints, and what a version keeps of its evaluation."""

    part: str
    fingerprint: str
    rows: int
    accuracy: float
    escalate_precision: float
    escalate_recall: float
    per_class: dict[str, dict[str, float]]
    confusion: dict[str, dict[str, int]]
    critical_missed: list[str] = field(default_factory=list)
    small_talk_answered: list[str] = field(default_factory=list)
    false_escalations: list[str] = field(default_factory=list)
    missed_escalations: list[str] = field(default_factory=list)
    routes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def at_least_as_good_as(self, other: Evaluation) -> bool:
        return (
            self.escalate_precision >= other.escalate_precision
            and self.escalate_recall >= other.escalate_recall
        )


ROUTE_ORDER = ("answer", "small_talk", "out_of_scope", "escalate")


def _ratio(a: int, b: int) -> float:
    return round(a / b, 4) if b else 0.0


def routes_for(
    probabilities: np.ndarray,
    labels: Sequence[str],
    *,
    thresholds: dict[str, float],
    combined_threshold: float,
    policies: dict[str, CategoryPolicy] | None = None,
) -> list[tuple[str, bool]]:
    """(argmax label, escalates) per row under ``intent_route`` (the rule used live)."""
    return [
        (label, route == "escalate")
        for label, route in _routes(
            probabilities,
            labels,
            thresholds=thresholds,
            combined_threshold=combined_threshold,
            policies=policies,
        )
    ]


def _routes(
    probabilities: np.ndarray,
    labels: Sequence[str],
    *,
    thresholds: dict[str, float],
    combined_threshold: float,
    policies: dict[str, CategoryPolicy] | None = None,
) -> list[tuple[str, str]]:
    """(argmax label, route) per row under ``intent_route``."""
    out = []
    for probs in probabilities:
        best = int(probs.argmax())
        intent = Intent(
            label=labels[best],
            confidence=float(probs[best]),
            scores={label: float(p) for label, p in zip(labels, probs, strict=True)},
            thresholds=thresholds,
            combined_threshold=combined_threshold,
        )
        out.append((labels[best], intent_route(intent, policies=policies).route))
    return out


def evaluation_of(
    *,
    part: str,
    rows: Sequence[LabelledText],
    probabilities: np.ndarray,
    labels: Sequence[str],
    thresholds: dict[str, float],
    combined_threshold: float,
    policies: dict[str, CategoryPolicy] | None = None,
) -> Evaluation:
    final = _routes(
        probabilities,
        labels,
        thresholds=thresholds,
        combined_threshold=combined_threshold,
        policies=policies,
    )
    routed = [(label, route == "escalate") for label, route in final]
    gold = [row.label for row in rows]
    predicted = [label for label, _ in routed]
    escalated = [esc for _, esc in routed]
    confusion = {g: {p: 0 for p in LABELS} for g in LABELS}
    for g, p in zip(gold, predicted, strict=True):
        confusion[g][p] += 1
    per_class = {}
    for label in LABELS:
        tp = confusion[label][label]
        predicted_n = sum(confusion[g][label] for g in LABELS)
        support = sum(confusion[label].values())
        per_class[label] = {
            "precision": _ratio(tp, predicted_n),
            "recall": _ratio(tp, support),
            "support": support,
        }
    should = [g in ESCALATING for g in gold]
    tp = sum(1 for s, e in zip(should, escalated, strict=True) if s and e)
    texts = [row.text for row in rows]
    return Evaluation(
        part=part,
        fingerprint=rows_fingerprint(rows),
        rows=len(rows),
        accuracy=_ratio(sum(1 for g, p in zip(gold, predicted, strict=True) if g == p), len(rows)),
        escalate_precision=_ratio(tp, sum(escalated)),
        escalate_recall=_ratio(tp, sum(should)),
        per_class=per_class,
        confusion=confusion,
        critical_missed=[
            f"[{g}] {t}"
            for g, e, t in zip(gold, escalated, texts, strict=True)
            if g in CRITICAL and not e
        ],
        small_talk_answered=[
            t
            for g, (p, e), t in zip(gold, routed, texts, strict=True)
            if g == "small_talk" and not e and p not in ("small_talk", "out_of_scope")
        ],
        false_escalations=[
            f"[{g} -> {p}] {t}"
            for g, (p, e), t in zip(gold, routed, texts, strict=True)
            if e and g not in ESCALATING
        ],
        missed_escalations=[
            f"[{g} -> {p}] {t}"
            for g, (p, e), t in zip(gold, routed, texts, strict=True)
            if g in ESCALATING and not e
        ],
        routes={route: sum(1 for _, r in final if r == route) for route in ROUTE_ORDER},
    )


def router_evaluate(
    model: RouterModel,
    *,
    part: str,
    rows: Sequence[LabelledText],
    vectors: np.ndarray,
    policies: dict[str, CategoryPolicy] | None = None,
) -> Evaluation:
    """Evaluate ``model`` (through its inference path) on ``rows`` with their vectors."""
    probabilities = model.probabilities([row.text for row in rows], vectors)
    return evaluation_of(
        part=part,
        rows=rows,
        probabilities=probabilities,
        labels=model.labels,
        thresholds=model.thresholds,
        combined_threshold=model.combined_threshold,
        policies=policies,
    )


# --- fitting --------------------------------------------------------------------------------------


@dataclass
class Fitted:
    labels: list[str]
    vocabulary: dict[str, list[str]]
    arrays: dict[str, np.ndarray]
    features: dict[str, dict[str, Any]]


FEATURES: dict[str, dict[str, Any]] = {
    "word": {"analyzer": "word", "ngram_range": [1, 2], "min_df": 2},
    "char": {"analyzer": "char_wb", "ngram_range": [2, 5], "min_df": 2},
}


def _fit(texts: Sequence[str], labels: Sequence[str], vectors: np.ndarray) -> Fitted:
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizers = {}
    blocks = []
    for block, params in FEATURES.items():
        vectorizer = TfidfVectorizer(
            analyzer=params["analyzer"],
            ngram_range=tuple(params["ngram_range"]),
            min_df=params["min_df"],
            lowercase=True,
            sublinear_tf=True,
        )
        blocks.append(vectorizer.fit_transform(list(texts)))
        vectorizers[block] = vectorizer
    features = hstack([*blocks, csr_matrix(np.asarray(vectors, dtype=np.float64))]).tocsr()
    classifier = LogisticRegression(C=C, max_iter=5000)
    classifier.fit(features, list(labels))
    order = [list(classifier.classes_).index(label) for label in LABELS if label in set(labels)]
    kept = [str(classifier.classes_[i]) for i in order]
    return Fitted(
        labels=kept,
        vocabulary={
            block: [str(t) for t in v.get_feature_names_out()] for block, v in vectorizers.items()
        },
        arrays={
            "coef": classifier.coef_[order].astype(np.float32),
            "intercept": classifier.intercept_[order].astype(np.float32),
            **{f"idf_{block}": v.idf_.astype(np.float32) for block, v in vectorizers.items()},
        },
        features=FEATURES,
    )


def _save(fitted: Fitted, directory: Path, meta: dict[str, Any]) -> RouterModel:
    directory.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(directory / WEIGHTS, **fitted.arrays)  # type: ignore[arg-type]
    (directory / VOCABULARY).write_text(json.dumps(fitted.vocabulary, ensure_ascii=False))
    (directory / META).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return RouterModel(directory)


def thresholds_calibrate(
    probabilities: np.ndarray, labels: Sequence[str], gold: Sequence[str]
) -> dict[str, Any]:
    """The grid search of step 3 on out-of-fold probabilities (see the module's doc)."""
    should = np.array([g in ESCALATING for g in gold])
    critical = np.array([g in CRITICAL for g in gold])
    candidates = []
    for general in GRID_GENERAL:
        for crit in GRID_CRITICAL:
            if crit > general:
                continue
            for combined in GRID_COMBINED:
                thresholds = {c: (crit if c in CRITICAL else general) for c in ESCALATING}
                routed = routes_for(
                    probabilities,
                    labels,
                    thresholds=thresholds,
                    combined_threshold=combined,
                    policies=DEFAULT_POLICIES,
                )
                escalated = np.array([e for _, e in routed])
                tp = int((should & escalated).sum())
                precision = tp / max(1, int(escalated.sum()))
                recall = tp / max(1, int(should.sum()))
                critical_recall = int((critical & escalated).sum()) / max(1, int(critical.sum()))
                candidates.append(
                    {
                        "general": general,
                        "critical": crit,
                        "combined": combined,
                        "precision": round(precision, 4),
                        "recall": round(recall, 4),
                        "critical_recall": round(critical_recall, 4),
                    }
                )
    reaching = [c for c in candidates if c["critical_recall"] >= CRITICAL_RECALL_TARGET]
    if not reaching:
        best_critical = max(c["critical_recall"] for c in candidates)
        reaching = [c for c in candidates if c["critical_recall"] == best_critical]
    best = max(
        reaching,
        key=lambda c: (
            min(c["precision"], c["recall"]),
            c["precision"] + c["recall"],
            c["critical"],
            c["general"],
            c["combined"],
        ),
    )
    return best


def router_train(
    *,
    rows: Sequence[LabelledText],
    vectors: np.ndarray,
    version: str,
    directory: Path,
    embedding_model: str,
    extra: dict[str, Any] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> RouterModel:
    """Fit, calibrate and save a router version to ``directory``; returns it loaded
    (through the same code that serves it)."""
    from sklearn.model_selection import StratifiedKFold

    started = time.monotonic()
    texts = [row.text for row in rows]
    labels = [row.label for row in rows]
    gold = np.array(labels)
    present = [label for label in LABELS if label in set(gold)]
    out_of_fold = np.zeros((len(rows), len(present)))
    splitter = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=SEED)
    for fold, (fit_idx, held_idx) in enumerate(splitter.split(texts, gold), start=1):
        progress(f"fold {fold}/{FOLDS}")
        fitted = _fit([texts[i] for i in fit_idx], [labels[i] for i in fit_idx], vectors[fit_idx])
        with _scratch() as scratch:
            model = _save(fitted, scratch, _meta(fitted, version="fold", thresholds={}))
            probs = model.probabilities([texts[i] for i in held_idx], vectors[held_idx])
        columns = [model.labels.index(label) if label in model.labels else -1 for label in present]
        for j, column in enumerate(columns):
            if column >= 0:
                out_of_fold[held_idx, j] = probs[:, column]
    calibration = thresholds_calibrate(out_of_fold, present, labels)
    progress(
        "thresholds: critical {critical}, others {general}, combined {combined} "
        "(out-of-fold precision {precision}, recall {recall})".format(**calibration)
    )
    fitted = _fit(texts, labels, vectors)
    thresholds = {
        c: (calibration["critical"] if c in CRITICAL else calibration["general"])
        for c in ESCALATING
    }
    meta = _meta(
        fitted,
        version=version,
        thresholds=thresholds,
        combined_threshold=calibration["combined"],
        embedding_model=embedding_model,
        training={
            "rows": len(rows),
            "fingerprint": rows_fingerprint(rows),
            "calibration": calibration,
            "seconds": round(time.monotonic() - started, 1),
            **(extra or {}),
        },
    )
    return _save(fitted, directory, meta)


def _meta(
    fitted: Fitted,
    *,
    version: str,
    thresholds: dict[str, float],
    combined_threshold: float = 0.5,
    embedding_model: str = "",
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    import sklearn

    return {
        "version": version,
        "recipe": RECIPE,
        "labels": fitted.labels,
        "embedding_model": embedding_model,
        "features": fitted.features,
        "thresholds": thresholds,
        "combined_threshold": combined_threshold,
        "sklearn": sklearn.__version__,
        "training": training or {},
    }


class _scratch:
    """A temporary folder for the folds' models (removed afterwards)."""

    def __enter__(self) -> Path:
        import tempfile

        self._dir = tempfile.TemporaryDirectory(prefix="router-fold-")
        return Path(self._dir.name)

    def __exit__(self, *exc: object) -> None:
        self._dir.cleanup()


__all__ = [
    "PARTS",
    "Evaluation",
    "LabelledText",
    "dataset_load",
    "evaluation_of",
    "router_evaluate",
    "router_train",
    "rows_fingerprint",
    "thresholds_calibrate",
]


SHORT = {
    "medical": "med",
    "safety": "saf",
    "security": "sec",
    "vulnerable": "vul",
    "legal": "leg",
    "press": "prs",
    "billing_dispute": "bil",
    "churn": "chu",
    "anger": "ang",
    "sarcasm": "sar",
    "frustration": "fru",
    "human_request": "hum",
    "out_of_scope": "oos",
    "small_talk": "st",
    "answer": "ans",
}


def evaluation_text(evaluation: Evaluation, *, version: str, errors: bool = False) -> str:
    """The report ``manage.py intents_eval`` prints (Markdown tables, as in the docs)."""
    lines = [
        f"Router {version} on the {evaluation.part} part ({evaluation.rows} messages, "
        f"sha256 {evaluation.fingerprint[:12]})",
        "",
        (
            f"Escalate-or-not: precision {evaluation.escalate_precision:.3f}, "
            f"recall {evaluation.escalate_recall:.3f}"
            if any(evaluation.per_class[c]["support"] for c in ESCALATING)
            else f"Escalated (none should be): {len(evaluation.false_escalations)}"
        ),
        "Routes: "
        + ", ".join(f"{route} {evaluation.routes.get(route, 0)}" for route in ROUTE_ORDER),
        f"Exact class: accuracy {evaluation.accuracy:.3f}",
        f"Safety, medical or security messages not escalated: {len(evaluation.critical_missed)}",
        f"Small talk routed to a knowledge-base answer: {len(evaluation.small_talk_answered)}",
        "",
        "| class | precision | recall | messages |",
        "|---|---:|---:|---:|",
    ]
    for label in LABELS:
        row = evaluation.per_class[label]
        lines.append(
            f"| {label} | {row['precision']:.3f} | {row['recall']:.3f} | {int(row['support'])} |"
        )
    lines += [
        "",
        "Confusion (rows: the label, columns: the router's class)",
        "",
        "| | " + " | ".join(SHORT[label] for label in LABELS) + " |",
        "|---|" + "---:|" * len(LABELS),
    ]
    for gold in LABELS:
        cells = [
            str(evaluation.confusion[gold][p]) if evaluation.confusion[gold][p] else "·"
            for p in LABELS
        ]
        lines.append(f"| {SHORT[gold]} | " + " | ".join(cells) + " |")
    if errors:
        for title, items in (
            ("Safety, medical or security not escalated", evaluation.critical_missed),
            ("Small talk routed to an answer", evaluation.small_talk_answered),
            ("Escalated but should not have been", evaluation.false_escalations),
            ("Not escalated but should have been", evaluation.missed_escalations),
        ):
            lines += ["", f"{title} ({len(items)}):", *(f"  {item}" for item in items)]
    return "\n".join(lines)
