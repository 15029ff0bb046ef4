"""Measuring retrieval and the honest "I don't know" on the shipped question sets.

``questions_dev.jsonl`` is for tuning and calibration, and the calibration is fitted on
``questions_train.jsonl`` too; ``questions_eval.jsonl`` (another author) is the reported
evaluation and is never fitted on. Each line is
``{"question", "article": slug | null, "evidence"?, "reference_answer"?}``; a null
article means the knowledge base cannot answer it.

Questions go through the assistant's own decision (``knowledge_answer``: hybrid ranking,
then the calibrated answer-or-not), and answered ones through the local extractive
answer step, on an index of the demo articles built in memory (nothing is written) or
the database's current index.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chat.assistant.contract import (
    BAND_CONFIDENT,
    BAND_DONT_KNOW,
    BANDS,
    Passage,
    Retrieval,
)
from chat.assistant.knowledge import (
    FEATURE_NAMES,
    IndexedArticle,
    IndexedPassage,
    KnowledgeIndex,
    RetrievalCalibration,
    RetrievalSignals,
    article_text,
    index_build,
    knowledge_answer,
    knowledge_search,
    passage_tokens,
)
from chat.assistant.passages import article_passages, passage_document
from chat.assistant.providers import Embedder

DATASETS = Path(__file__).with_name("datasets")
DEMO_ARTICLES = Path(__file__).resolve().parent.parent / "demo" / "articles.json"


# Questions added to dev (short questions and near misses, written from the articles),
# kept in their own file: the intent router's shipped training data includes
# ``questions_dev.jsonl`` as it was when the router was trained.
DEV_ADDED = "questions_dev_short.jsonl"


def questions_load(name: str) -> list[dict[str, Any]]:
    paths = [DATASETS / f"questions_{name}.jsonl"]
    if name == "dev":
        paths.append(DATASETS / DEV_ADDED)
    return [
        json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip()
    ]


def demo_index(embedder: Embedder) -> KnowledgeIndex:
    """The demo articles split, embedded and indexed in memory (as the background
    embedding would store them)."""
    articles = json.loads(DEMO_ARTICLES.read_text())
    documents = [
        article_text(title=a["title"], body=a["body"], labels=a.get("search_labels", []))
        for a in articles
    ]
    vectors = embedder.embed_documents(documents)
    specs = [(a, spec) for a in articles for spec in article_passages(body=a["body"])]
    encodings = embedder.encode_documents(
        [passage_document(title=a["title"], heading=s.heading, text=s.text) for a, s in specs]
    )
    return index_build(
        signature=("demo",),
        articles=[
            IndexedArticle(
                slug=a["slug"],
                title=a["title"],
                body=a["body"],
                vector=v,
                labels=a.get("search_labels", []),
            )
            for a, v in zip(articles, vectors, strict=True)
        ],
        passages=[
            IndexedPassage(
                slug=a["slug"],
                anchor=s.anchor,
                heading=s.heading,
                text=s.text,
                vector=e.vector,
                tokens=tokens if (tokens := passage_tokens(e)) is not None else b"",
            )
            for (a, s), e in zip(specs, encodings, strict=True)
        ],
    )


_WORD = re.compile(r"[a-z0-9€£%.]+")


def evidence_quoted(answer: str, evidence: str) -> bool:
    """The text contains most (80%) of the evidence's words: an answer that quotes the
    passage that answers, or that passage itself."""
    wanted = _WORD.findall(evidence.lower())
    if not wanted:
        return False
    have = set(_WORD.findall(answer.lower()))
    return sum(w in have for w in wanted) / len(wanted) >= 0.8


@dataclass
class Outcome:
    question: str
    want: str | None
    passages: list[Passage]
    retrieval: Retrieval
    ranked_first: str  # the ranking's first article, before the answer-or-not decision
    signals: RetrievalSignals
    evidence: str = ""
    answer: str = ""
    quoted: bool | None = None

    @property
    def right_passage_first(self) -> bool:
        """The right article is cited first, and its first passage holds the evidence."""
        return (
            bool(self.want)
            and self.cited_first == self.want
            and bool(self.evidence)
            and evidence_quoted(self.passages[0].text, self.evidence)
        )

    @property
    def cited_first(self) -> str | None:
        return self.passages[0].slug if self.passages else None

    @property
    def band(self) -> str:
        return self.retrieval.answer_band

    @property
    def honest(self) -> bool:
        """For an unanswerable question: no confident answer (the honest "I don't know",
        or a hedged reply that says it is not sure and offers a person)."""
        return self.band != BAND_CONFIDENT


@dataclass
class Report:
    name: str
    outcomes: list[Outcome]
    cpu_ms: list[float] = field(default_factory=list)
    encode_ms: float = 0.0

    @property
    def answerable(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.want]

    @property
    def unanswerable(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.want]

    def figures(self) -> dict[str, Any]:
        answerable, unanswerable = self.answerable, self.unanswerable
        n, m = max(len(answerable), 1), max(len(unanswerable), 1)
        answered_right = [o for o in answerable if o.cited_first == o.want]
        quoted = [o for o in answered_right if o.quoted is not None]
        return {
            "set": self.name,
            "answerable": len(answerable),
            "unanswerable": len(unanswerable),
            # Hedged or not: the right article is cited first.
            "right_article_first": round(len(answered_right) / n, 4),
            "right_article_first_confident": round(
                sum(o.band == BAND_CONFIDENT for o in answered_right) / n, 4
            ),
            # "I don't know" or hedged with the offer of a person.
            "honest": round(sum(o.honest for o in unanswerable) / m, 4),
            "bands_answerable": {b: sum(o.band == b for o in answerable) for b in BANDS},
            "bands_answerable_right": {b: sum(o.band == b for o in answered_right) for b in BANDS},
            "bands_unanswerable": {b: sum(o.band == b for o in unanswerable) for b in BANDS},
            "right_passage_first": round(sum(o.right_passage_first for o in answered_right) / n, 4),
            "right_article_top3": round(
                sum(o.want in {p.slug for p in o.passages[:3]} for o in answerable) / n, 4
            ),
            "ranking_top1": round(sum(o.ranked_first == o.want for o in answerable) / n, 4),
            "answerable_said_dont_know": round(
                sum(o.retrieval.no_answer for o in answerable) / n, 4
            ),
            "honest_dont_know": round(sum(o.band == BAND_DONT_KNOW for o in unanswerable) / m, 4),
            "answer_quotes_evidence": (
                round(sum(bool(o.quoted) for o in quoted) / len(quoted), 4) if quoted else None
            ),
            "retrieval_cpu_ms_p50": round(statistics.median(self.cpu_ms), 2)
            if self.cpu_ms
            else None,
            "query_encode_ms": round(self.encode_ms, 2),
        }

    def confusions(self, top: int = 12) -> list[tuple[str, str, int]]:
        pairs = Counter(
            (o.want or "", o.cited_first or "")
            for o in self.answerable
            if o.cited_first and o.cited_first != o.want
        )
        return [(want, got, count) for (want, got), count in pairs.most_common(top)]


def evaluate(
    *,
    name: str,
    questions: list[dict[str, Any]],
    index: KnowledgeIndex,
    embedder: Embedder,
    top_k: int,
    answer_step: bool = True,
) -> Report:
    """Every question through ``knowledge_answer`` (and the extractive answer step)."""
    texts = [q["question"] for q in questions]
    started = time.perf_counter()
    encodings = embedder.encode_documents(texts)
    encode_ms = (time.perf_counter() - started) * 1000 / max(len(texts), 1)
    report = Report(name=name, outcomes=[], encode_ms=encode_ms)
    for question, encoding in zip(questions, encodings, strict=True):
        cpu = time.process_time()
        passages, retrieval = knowledge_answer(
            index=index,
            query=encoding,
            query_text=question["question"],
            embedding_model=embedder.name,
            top_k=top_k,
        )
        report.cpu_ms.append((time.process_time() - cpu) * 1000)
        ranking = knowledge_search(
            index=index, query=encoding, query_text=question["question"], top_k=1
        )
        report.outcomes.append(
            Outcome(
                question=question["question"],
                want=question.get("article"),
                passages=passages,
                retrieval=retrieval,
                ranked_first=ranking.passages[0].slug if ranking.passages else "",
                signals=ranking.signals,
                evidence=question.get("evidence") or "",
            )
        )
    if answer_step:
        _answers(report, questions, encodings)
    return report


def _answers(report: Report, questions: list[dict[str, Any]], encodings: list[Any]) -> None:
    """The local extractive model's answer from the passages, as the chain prompts it."""
    from chat.assistant.chain import passages_context
    from chat.assistant.local_model import _sentence_vectors, answer_compose, prompt_passages

    for outcome, question, encoding in zip(report.outcomes, questions, encodings, strict=True):
        if not outcome.passages:
            continue
        prompt = prompt_passages(passages_context(outcome.passages))
        outcome.answer = answer_compose(
            question_vector=encoding.vector,
            passages=prompt,
            sentence_vectors=[_sentence_vectors(p.text) for p in prompt],
        )
        if question.get("evidence") and outcome.cited_first == outcome.want:
            outcome.quoted = evidence_quoted(outcome.answer, question["evidence"])


# --- calibration (dev and train, never eval) ---------------------------------------------------


# The target is no confident answer to 90% of the questions the knowledge base
# cannot answer; the threshold is set for 95% of the fitting sets' unanswerable questions
# (out of fold), a margin for questions written by other people.
TARGET = 0.95
# Above the hedge threshold the closest article is the right one at least this often. The
# hedged reply offers a person exactly as the "I don't know" does, so its only cost is
# showing an article that may not help (and it says so); below one in three it mostly would.
HEDGE_PRECISION = 1 / 3
# Both thresholds are medians over bootstrap resamples of the out-of-fold probabilities:
# a threshold read off one sample of ~230 unanswerable questions moves by hundredths when
# one question or label changes; the median does not jump with one question.
BOOTSTRAP = 200
# Ridge strength of the logistic model (sklearn's C; smaller is stronger).
REGULARISATION = 1.0


def _answer_threshold(*, probabilities: np.ndarray, answerable: np.ndarray) -> float:
    """The lowest probability at which at most 1 - ``TARGET`` of the unanswerable
    questions get a confident answer (the highest probability seen, if none does)."""
    unanswerable = probabilities[~answerable]
    candidates = np.unique(probabilities)
    allowed = (1 - TARGET) * max(len(unanswerable), 1)
    for threshold in candidates:
        if (unanswerable >= threshold).sum() <= allowed:
            return float(threshold)
    return float(candidates[-1])


def _hedge_threshold(*, probabilities: np.ndarray, right: np.ndarray) -> float:
    """The probability at which the right article is first ``HEDGE_PRECISION`` of the
    time, read off a one-feature logistic recalibration of the probabilities (Platt
    scaling on their logit: smooth, unlike a count over the next few questions)."""
    from sklearn.linear_model import LogisticRegression

    clipped = np.clip(probabilities, 1e-6, 1 - 1e-6)
    logits = np.log(clipped / (1 - clipped)).reshape(-1, 1)
    if right.all() or not right.any():
        return HEDGE_PRECISION
    recalibration = LogisticRegression(C=1e6, max_iter=1000).fit(logits, right)
    slope, intercept = float(recalibration.coef_[0][0]), float(recalibration.intercept_[0])
    if slope <= 0:
        return HEDGE_PRECISION
    target = math.log(HEDGE_PRECISION / (1 - HEDGE_PRECISION))
    return 1 / (1 + math.exp(-(target - intercept) / slope))


def thresholds_choose(
    *, probabilities: np.ndarray, right: np.ndarray, answerable: np.ndarray, seed: int = 0
) -> tuple[float, float]:
    """(answer threshold, hedge threshold) from out-of-fold probabilities: the medians over
    ``BOOTSTRAP`` resamples of ``_answer_threshold`` and ``_hedge_threshold`` (the hedge
    threshold is never above the answer threshold)."""
    rng = np.random.default_rng(seed)
    uppers, lowers = [], []
    for _ in range(BOOTSTRAP):
        sample = rng.integers(0, len(probabilities), len(probabilities))
        uppers.append(
            _answer_threshold(probabilities=probabilities[sample], answerable=answerable[sample])
        )
        lowers.append(_hedge_threshold(probabilities=probabilities[sample], right=right[sample]))
    upper = float(np.median(uppers))
    return upper, min(float(np.median(lowers)), upper)


def calibration_fit(*, reports: list[Report], embedding_model: str) -> RetrievalCalibration:
    """Fit "the first article cited is right" on the ranking's signals of every question
    of ``reports`` (ridge logistic regression on standardised features, folded back to
    raw weights) and choose both thresholds (``thresholds_choose``) on out-of-fold
    probabilities (5 folds stratified by set, outcome and answerability, averaged over 3
    shuffles)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    outcomes = [o for report in reports for o in report.outcomes]
    features = np.asarray([o.signals.features() for o in outcomes], dtype=np.float64)
    right = np.asarray([bool(o.want) and o.ranked_first == o.want for o in outcomes])
    answerable = np.asarray([bool(o.want) for o in outcomes])
    source = np.concatenate([[i] * len(r.outcomes) for i, r in enumerate(reports)])
    strata = source * 4 + right * 2 + answerable

    def model() -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression(C=REGULARISATION, max_iter=5000))

    held_out = np.zeros(len(outcomes))
    shuffles = (0, 1, 2)
    for seed in shuffles:
        folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
        for train, test in folds.split(features, strata):
            fitted = model().fit(features[train], right[train])
            held_out[test] += fitted.predict_proba(features[test])[:, 1] / len(shuffles)
    upper, lower = thresholds_choose(probabilities=held_out, right=right, answerable=answerable)
    fitted = model().fit(features, right)
    scaler, logistic = fitted[0], fitted[-1]
    weights = logistic.coef_[0] / scaler.scale_
    bias = float(logistic.intercept_[0] - (logistic.coef_[0] * scaler.mean_ / scaler.scale_).sum())
    return RetrievalCalibration(
        embedding_model=embedding_model,
        weights=[round(float(w), 6) for w in weights],
        bias=round(bias, 6),
        threshold=round(upper, 6),
        fitted_on=" + ".join(f"{r.name}: {len(r.outcomes)} questions" for r in reports),
        features=list(FEATURE_NAMES),
        hedge_threshold=round(lower, 6),
    )


def percent(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}%"
