"""The retriever adapter run, on the worker's side: what it learns from, and its
before/after evaluation.

Training rows come from the snapshot: every answer a reviewer rated high (score >= 4,
a desirable KTO row, the chosen side of a pair: better answers, agents' replies) marks
the passage it answered from as a positive for its question; every answer rated low (or
rejected) marks its passage as a hard negative. Which passage an answer answered from is
found by retrieval over the live knowledge index with the answer's own text (answers
quote their passage; an answer that quotes no passage, such as "I don't know", gives no
row). The child (``retriever_backend``) gets the rows, the index's passages and vectors,
and trains a query-side LoRA adapter.

The evaluation runs here, after the child: the snapshot's held-out questions with a
known-good answer, through the assistant's own retrieval decision
(``chat.assistant.evaluation.evaluate``: ``knowledge_answer``'s ranking and calibrated
answer-or-not, then the local extractive answer), with the base encoder and with the
adapter; "right article first" and the judge's scores against the known-good answer.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from statistics import mean
from typing import Any

import numpy as np

from chat.assistant.embeddings import MODEL_NAME, Encoding, encode_texts, stop_token_ids
from chat.assistant.knowledge import (
    CANDIDATES,
    CODE_BOOST,
    SIGNAL_WEIGHTS,
    KnowledgeIndex,
    bm25_scores,
    bm25_tokens,
    code_words,
    knowledge_index,
    knowledge_search,
)
from labeling.models import DatasetSnapshot
from labeling.selectors import snapshot_rows

DESIRABLE_MIN_SCORE = 4.0
UNDESIRABLE_MAX_SCORE = 2.0
# Share of an answer's words its passage must hold for the answer to count as answered
# from it (answers quote; an apology or a vague deflection quotes nothing).
QUOTE_MIN_SHARE = 0.6
_WORD = re.compile(r"[a-z0-9€£%]+")
_CITATION = re.compile(r"\[\d+\]")
# A hedged reply ("I'm not certain this answers your question, ..." first, most replies
# since the answerability calibration) is traced to the passage it quotes like any other
# answer. Without it the run learnt from the confident answers and the better answers
# only, and on the dev questions the adapter gained little (bench/retriever_dev.py,
# docs/training.md).
TRACE_HEDGED = True


class QuestionEncoder:
    """The MiniLM embedder as ``chat.assistant.evaluation`` uses it for questions, with
    or without a retriever adapter (passages keep the base encoder's index)."""

    name = MODEL_NAME

    def __init__(self, adapter_path: str = "") -> None:
        self.adapter_path = adapter_path

    def encode_documents(self, texts: list[str]) -> list[Encoding]:
        return encode_texts(texts, adapter_path=self.adapter_path)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return np.stack([e.vector for e in self.encode_documents(texts)])

    async def embed_query(self, text: str) -> np.ndarray:
        return self.encode_documents([text])[0].vector

    async def encode_query(self, text: str, adapter_path: str = "") -> Encoding:
        return encode_texts([text], adapter_path=adapter_path or self.adapter_path)[0]

    def sentence_vectors(self, texts: list[str]) -> list[np.ndarray] | None:
        from chat.assistant.local_model import sentence_vectors_compute

        return sentence_vectors_compute(texts)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def answer_quote(answer: str, *, trace_hedged: bool = TRACE_HEDGED) -> str:
    """The part of ``answer`` that quotes its passage: the first paragraph (an answer
    citing two articles quotes the second in another paragraph), after the hedged
    band's "I'm not certain ..." opening when ``trace_hedged``; citation markers like
    [1] are no words of the passage."""
    from chat.assistant.chain import HEDGE_OPENING

    paragraphs = answer.strip().split("\n\n")
    if trace_hedged and len(paragraphs) > 1 and paragraphs[0].strip() == HEDGE_OPENING:
        paragraphs = paragraphs[1:]
    return _CITATION.sub(" ", paragraphs[0])


def answer_passages(
    *, index: KnowledgeIndex, answers: list[str], trace_hedged: bool = TRACE_HEDGED
) -> list[int | None]:
    """The index row of the passage each answer answered from, or None when it quotes
    none (found by the assistant's own ranking with the answer as the query, then
    checked: most of the answer's words are in that passage or its article's title)."""
    unique = list(dict.fromkeys(a for a in answers if a.strip()))
    firsts = {a: answer_quote(a, trace_hedged=trace_hedged) for a in unique}
    encodings = dict(zip(unique, encode_texts([firsts[a] for a in unique]), strict=True))
    found: dict[str, int | None] = {}
    for answer in unique:
        ranking = knowledge_search(
            index=index, query=encodings[answer], query_text=firsts[answer], top_k=3
        )
        wanted = _words(firsts[answer])
        best: int | None = None
        for passage in ranking.passages:
            row = index.texts.index(passage.text)
            have = set(_words(passage.text)) | set(
                _words(index.titles[int(index.passage_article[row])])
            )
            if wanted and sum(w in have for w in wanted) / len(wanted) >= QUOTE_MIN_SHARE:
                best = row
                break
        found[answer] = best
    return [found.get(a) if a.strip() else None for a in answers]


def _judgements(snapshot: DatasetSnapshot) -> list[dict[str, Any]]:
    """(question, answer, good: bool, split) from every row kind of the snapshot."""
    out: list[dict[str, Any]] = []
    for row in snapshot_rows(snapshot=snapshot, kind="scored"):
        score = float(row.get("score") or 0)
        if score >= DESIRABLE_MIN_SCORE or score <= UNDESIRABLE_MAX_SCORE:
            out.append(
                {
                    "question": row["prompt"],
                    "answer": row["response"],
                    "good": score >= DESIRABLE_MIN_SCORE,
                    "split": row.get("split", "train"),
                }
            )
    for row in snapshot_rows(snapshot=snapshot, kind="pair"):
        for side, good in (("chosen", True), ("rejected", False)):
            out.append(
                {
                    "question": row["prompt"],
                    "answer": row[side],
                    "good": good,
                    "split": row.get("split", "train"),
                }
            )
    for row in snapshot_rows(snapshot=snapshot, kind="kto"):
        out.append(
            {
                "question": row["prompt"],
                "answer": row["completion"],
                "good": bool(row.get("label")),
                "split": row.get("split", "train"),
            }
        )
    return out


def retriever_rows(
    *, snapshot: DatasetSnapshot, index: KnowledgeIndex
) -> dict[str, list[dict[str, Any]]]:
    """Per split, one row per question: ``{question, positive, negatives, reference,
    lexical}`` (passage rows of ``index``; ``positive`` None when only low-rated answers
    are known, ``reference`` a known-good answer, ``lexical`` the ranking's fixed
    signals: ``lexical_signals``)."""
    return rows_from_judgements(judgements=_judgements(snapshot), index=index)


def lexical_signals(*, index: KnowledgeIndex, question: str) -> dict[str, Any]:
    """What ``knowledge_search`` fuses for ``question`` that no encoder changes: the BM25
    score of every passage and every article, and the articles whose title names an
    error code the question names (``CODE_BOOST``). The adapter is trained through the
    ranking itself, with these fixed and the encoder's signals learnt."""
    tokens = bm25_tokens([question])[0] if question.strip() else []
    codes = code_words(question)
    return {
        "bm25": np.round(bm25_scores(index.passage_bm25, tokens, index.size), 4).tolist(),
        "article_bm25": np.round(
            bm25_scores(index.article_bm25, tokens, len(index.slugs)), 4
        ).tolist(),
        "boost": [a for a, named in enumerate(index.article_codes) if codes & named],
    }


def rows_from_judgements(
    *, judgements: list[dict[str, Any]], index: KnowledgeIndex, trace_hedged: bool = TRACE_HEDGED
) -> dict[str, list[dict[str, Any]]]:
    """``retriever_rows`` from judgements ``{question, answer, good, split}``."""
    rows_of = answer_passages(
        index=index, answers=[j["answer"] for j in judgements], trace_hedged=trace_hedged
    )
    positives: dict[tuple[str, str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    negatives: dict[tuple[str, str], set[int]] = defaultdict(set)
    references: dict[tuple[str, str], str] = {}
    order: list[tuple[str, str]] = []
    for judgement, row in zip(judgements, rows_of, strict=True):
        key = (judgement["split"], judgement["question"])
        if key not in positives and key not in negatives:
            order.append(key)
        if judgement["good"]:
            references.setdefault(key, judgement["answer"])
            if row is not None:
                positives[key][row] += 1
        elif row is not None:
            negatives[key].add(row)
    out: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    for key in dict.fromkeys(order):
        split, question = key
        votes = positives.get(key) or {}
        positive = max(votes, key=lambda r: (votes[r], -r)) if votes else None
        good_articles = {int(index.passage_article[r]) for r in votes}
        hard = sorted(
            r
            for r in negatives.get(key, set())
            if int(index.passage_article[r]) not in good_articles
        )
        if positive is None and not hard:
            continue
        out.setdefault(split, []).append(
            {
                "question": question,
                "positive": positive,
                "negatives": hard,
                "reference": references.get(key, ""),
                "lexical": lexical_signals(index=index, question=question),
            }
        )
    return out


TOKENS_FILE = "passage_tokens.npy"


def retriever_corpus(index: KnowledgeIndex, work_dir: Path | None = None) -> dict[str, Any]:
    """The live index's passages and articles with the vectors it holds (the adapter is
    trained against exactly these). With ``work_dir``, the passages' token vectors (the
    late-interaction signal's, float16, too many for JSON) are written there as
    ``TOKENS_FILE`` and named in the corpus, with the stop-word token ids the ranking
    leaves out of a question, so that the child can rank as ``knowledge_search`` does."""
    corpus: dict[str, Any] = {
        "passages": list(index.texts),
        "passage_article": [int(a) for a in index.passage_article],
        "articles": list(index.titles),
        "passage_vectors": np.round(index.passage_matrix, 6).tolist(),
        "article_vectors": np.round(index.article_matrix, 6).tolist(),
    }
    if work_dir is not None and len(index.tokens):
        path = Path(work_dir) / TOKENS_FILE
        np.save(path, index.tokens.astype(np.float16))
        corpus.update(
            {
                "token_file": str(path),
                "token_offsets": [int(o) for o in index.token_offsets],
                "stop_token_ids": sorted(stop_token_ids()),
                "candidates": CANDIDATES,
                "signal_weights": list(SIGNAL_WEIGHTS),
                "code_boost": CODE_BOOST,
            }
        )
    return corpus


def retriever_spec_parts(
    *, snapshot: DatasetSnapshot, work_dir: Path | None = None
) -> dict[str, Any]:
    """The spec's rows and corpus for a retriever run (the live MiniLM index)."""
    index = knowledge_index(embedding_model=MODEL_NAME)
    if not index.size:
        return {"rows": {"train": [], "test": []}, "corpus": {}}
    rows = retriever_rows(snapshot=snapshot, index=index)
    return {"rows": rows, "corpus": retriever_corpus(index, work_dir)}


# --- evaluation -------------------------------------------------------------------------------


def _answer_of(outcome: Any) -> str:
    from chat.assistant.chain import NO_ANSWER_TEXT

    return outcome.answer if outcome.passages and outcome.answer else NO_ANSWER_TEXT


def retriever_evaluate(
    *, questions: list[dict[str, Any]], adapter_path: str, index: KnowledgeIndex | None = None
) -> dict[str, Any]:
    """Before/after figures of a retriever adapter on ``questions`` ({question, article,
    reference, judge_reference?}: the judge compares with ``judge_reference`` when
    given, else with ``reference``): right article cited first (the assistant's ranking
    and calibrated decision), the judge's mean score of the answer and the share above
    3, per question side by side."""
    from chat.assistant.evaluation import evaluate
    from labeling.judge import judge_score

    if index is None:
        index = knowledge_index(embedding_model=MODEL_NAME)
    if not questions or not index.size:
        return {"kind": "retriever", "questions": 0}
    from django.conf import settings

    reports = {
        side: evaluate(
            name=side,
            questions=questions,
            index=index,
            embedder=QuestionEncoder(adapter_path=path),
            top_k=settings.ASSISTANT_TOP_K,
        )
        for side, path in (("before", ""), ("after", adapter_path))
    }
    rows = []
    method = ""
    for i, question in enumerate(questions):
        row: dict[str, Any] = {
            "prompt": question["question"],
            "reference": question.get("reference") or "",
            "want": question.get("article"),
        }
        for side, report in reports.items():
            outcome = report.outcomes[i]
            answer = _answer_of(outcome)
            verdict = judge_score(
                question=question["question"],
                answer=answer,
                reference=question.get("judge_reference") or row["reference"] or None,
            )
            method = verdict.method
            row[side] = answer
            row[f"{side}_article"] = outcome.cited_first
            row[f"{side}_score"] = float(verdict.score)
        rows.append(row)
    answerable = [r for r in rows if r["want"]]

    def side_figures(side: str) -> dict[str, Any]:
        scores = [r[f"{side}_score"] for r in rows]
        return {
            "right_article_first": round(
                sum(r[f"{side}_article"] == r["want"] for r in answerable)
                / max(len(answerable), 1),
                4,
            )
            if answerable
            else None,
            "mean": round(mean(scores), 3) if scores else None,
            "share_above_3": round(sum(s > 3 for s in scores) / len(scores), 3) if scores else None,
        }

    return {
        "kind": "retriever",
        "method": method,
        "questions": len(rows),
        "answerable": len(answerable),
        "before": side_figures("before"),
        "after": side_figures("after"),
        "rows": rows,
    }


def held_out_questions(*, test_rows: list[dict[str, Any]], index: KnowledgeIndex) -> list[dict]:
    """The snapshot's held-out rows with a positive, as evaluation questions."""
    return [
        {
            "question": row["question"],
            "article": index.slugs[int(index.passage_article[int(row["positive"])])],
            "reference": row.get("reference") or "",
            # The judge compares answers with the passage the good answer quoted, not
            # with that answer: most good answers are the base retriever's own, and an
            # answer judged against itself would favour "before".
            "judge_reference": index.texts[int(row["positive"])],
        }
        for row in test_rows
        if row.get("positive") is not None
    ]
