"""Answer memory: answers the support team approved (``SupportAnswer``), found by the
question they answered.

A customer's question is compared with the approved questions by MiniLM cosine (the
retrieval encoder without any retriever adapter, the vectors stored at approval). The
closest approved question at or above ``ANSWER_MEMORY_MIN_SIMILARITY`` whose answer is
also about the question (cosine of question and answer at least
``ANSWER_MEMORY_MIN_ANSWER_SIMILARITY``) and names no other error code gives the reply,
cited "From our support team" (and the article it concerns, if any). Questions alone are
a weak signal with MiniLM: two different questions about the same product ("restart the
hub for E11" / "for E21") reach 0.8. The thresholds are calibrated on the dev questions
(``memory_calibrate``, ``manage.py assistant_eval --memory``): a question asking what an
approved one asked should match, a different question should not.

The matrix is built from the database and cached per process like the knowledge index,
re-checked (one signature query) at most every ``KNOWLEDGE_REFRESH_SECONDS``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings

from chat.assistant.contract import SupportAnswerMatch
from chat.assistant.knowledge import error_codes
from chat.assistant.refreshing import Refreshed
from chat.selectors import support_answers_matchable, support_answers_signature


@dataclass(frozen=True)
class MemoryEntry:
    pk: int
    answer: str
    article_slug: str
    article_title: str
    codes: frozenset[str] = frozenset()  # error codes its question and answer name


@dataclass(frozen=True)
class MemoryIndex:
    signature: tuple[Any, ...]
    entries: list[MemoryEntry]
    matrix: np.ndarray  # (n, dim) unit rows, the approved questions
    answers: np.ndarray  # (n, dim) unit rows, their answers

    @property
    def size(self) -> int:
        return len(self.entries)


_indexes: dict[str, MemoryIndex] = {}
_lock = threading.Lock()


def memory_index(*, embedding_model: str) -> MemoryIndex:
    """The approved answers' question vectors for ``embedding_model`` (one signature
    query, two when it must be rebuilt)."""
    signature = support_answers_signature(embedding_model=embedding_model)
    index = _indexes.get(embedding_model)
    if index is not None and index.signature == signature:
        return index
    with _lock:
        rows = list(
            support_answers_matchable(embedding_model=embedding_model)
            .order_by("pk")
            .values_list(
                "pk",
                "question",
                "answer",
                "embedding",
                "answer_embedding",
                "article__slug",
                "article__title",
            )
        )
        dims = {len(row[3]) for row in rows if isinstance(row[3], list)}
        dim = max(dims) if dims else 0
        kept = [
            row
            for row in rows
            if isinstance(row[3], list)
            and isinstance(row[4], list)
            and len(row[3]) == len(row[4]) == dim
        ]
        index = MemoryIndex(
            signature=signature,
            entries=[
                MemoryEntry(
                    pk=pk,
                    answer=answer,
                    article_slug=slug or "",
                    article_title=title or "",
                    codes=frozenset(error_codes(f"{question} {answer}")),
                )
                for pk, question, answer, _, _, slug, title in kept
            ],
            matrix=np.asarray([row[3] for row in kept], dtype=np.float32).reshape(len(kept), dim),
            answers=np.asarray([row[4] for row in kept], dtype=np.float32).reshape(len(kept), dim),
        )
        _indexes[embedding_model] = index
        return index


_current_memory: Refreshed[MemoryIndex] = Refreshed(
    memory_index, interval=lambda: float(settings.KNOWLEDGE_REFRESH_SECONDS)
)


async def memory_index_current(*, embedding_model: str) -> MemoryIndex:
    """The memory for ``embedding_model``, re-checked against the database at most every
    ``KNOWLEDGE_REFRESH_SECONDS`` (an approval or a revocation shows within that time)."""
    return await _current_memory.current(embedding_model=embedding_model)


def memory_forget() -> None:
    """Re-read the memory from the database on next use (a command that approves or
    revokes answers and then asks questions in the same process)."""
    _indexes.clear()
    _current_memory.forget()


def memory_eligible(
    *,
    question_similarity: np.ndarray,
    answer_similarity: np.ndarray,
    codes_compatible: np.ndarray,
    min_similarity: float,
    min_answer_similarity: float,
) -> np.ndarray:
    """The remembered answers a question may get (the rule ``memory_match`` applies and
    ``memory_calibrate`` measures)."""
    return (
        (question_similarity >= min_similarity)
        & (answer_similarity >= min_answer_similarity)
        & codes_compatible
    )


def memory_match(
    *,
    index: MemoryIndex,
    vector: np.ndarray,
    question: str,
    min_similarity: float | None = None,
    min_answer_similarity: float | None = None,
) -> SupportAnswerMatch | None:
    """The approved answer whose question is closest to ``vector`` among those that
    qualify (``memory_eligible``: question cosine >= ``min_similarity``, answer cosine >=
    ``min_answer_similarity``, defaults from the settings; no error code in ``question``
    that the remembered question and answer do not name), else None. No database
    access."""
    vector = np.asarray(vector, dtype=np.float32)
    if not index.size or index.matrix.shape[1] != vector.shape[-1]:
        return None
    asked_codes = error_codes(question)
    similarities = index.matrix @ vector
    eligible = memory_eligible(
        question_similarity=similarities,
        answer_similarity=index.answers @ vector,
        codes_compatible=np.asarray([asked_codes <= e.codes for e in index.entries], dtype=bool),
        min_similarity=float(
            settings.ANSWER_MEMORY_MIN_SIMILARITY if min_similarity is None else min_similarity
        ),
        min_answer_similarity=float(
            settings.ANSWER_MEMORY_MIN_ANSWER_SIMILARITY
            if min_answer_similarity is None
            else min_answer_similarity
        ),
    )
    if not eligible.any():
        return None
    best = int(np.argmax(np.where(eligible, similarities, -np.inf)))
    similarity = float(similarities[best])
    entry = index.entries[best]
    return SupportAnswerMatch(
        support_answer_id=entry.pk,
        answer=entry.answer,
        similarity=similarity,
        article_slug=entry.article_slug,
        article_title=entry.article_title,
    )


# --- calibration on the dev questions ----------------------------------------------------


@dataclass(frozen=True)
class MemoryCalibrationRow:
    min_similarity: float
    min_answer_similarity: float
    matched: int  # questions that got a remembered answer
    right: int  # ... whose remembered answer is for the question's article
    same_answer: int  # ... whose remembered answer is the question's own evidence
    unanswerable: int  # questions no article answers that got a remembered answer

    @property
    def precision(self) -> float:
        return self.right / self.matched if self.matched else 0.0


def memory_calibrate(
    *,
    questions: Sequence[dict[str, Any]],
    question_vectors: np.ndarray,
    answer_vectors: np.ndarray,
    grid: Sequence[tuple[float, float]],
) -> list[MemoryCalibrationRow]:
    """Leave-one-out on a question set: every question with an article and an evidence
    sentence stands in for an approved answer (that sentence), and every question is
    asked against the others' (never its own). A match is right when the remembered
    answer concerns the question's article. ``question_vectors`` are the questions' unit
    vectors in order, ``answer_vectors`` those of the remembered questions' evidence
    (``memory_calibration_set``)."""
    memory = [i for i, q in enumerate(questions) if q.get("article") and q.get("evidence")]
    qq = question_vectors @ question_vectors[memory].T  # (questions, memory)
    qa = question_vectors @ answer_vectors.T
    for column, i in enumerate(memory):
        qq[i, column] = qa[i, column] = -1.0  # not its own
    remembered_codes = [
        error_codes(f"{questions[i]['question']} {questions[i]['evidence']}") for i in memory
    ]
    compatible = np.asarray(
        [[error_codes(q["question"]) <= codes for codes in remembered_codes] for q in questions],
        dtype=bool,
    )
    rows = []
    for min_similarity, min_answer_similarity in grid:
        eligible = memory_eligible(
            question_similarity=qq,
            answer_similarity=qa,
            codes_compatible=compatible,
            min_similarity=min_similarity,
            min_answer_similarity=min_answer_similarity,
        )
        best = np.where(eligible, qq, -np.inf).argmax(axis=1)
        matched = right = same = unanswerable = 0
        for i in np.flatnonzero(eligible.any(axis=1)).tolist():
            q, remembered = questions[i], questions[memory[int(best[i])]]
            matched += 1
            unanswerable += not q.get("article")
            right += bool(q.get("article")) and remembered["article"] == q["article"]
            same += bool(q.get("evidence")) and remembered["evidence"] == q["evidence"]
        rows.append(
            MemoryCalibrationRow(
                min_similarity=min_similarity,
                min_answer_similarity=min_answer_similarity,
                matched=matched,
                right=right,
                same_answer=same,
                unanswerable=unanswerable,
            )
        )
    return rows


def memory_calibration_set(
    questions: Sequence[dict[str, Any]],
) -> tuple[np.ndarray, np.ndarray]:
    """The MiniLM vectors ``memory_calibrate`` needs: every question's, and the evidence
    sentences of the questions that stand in for approved answers."""
    from chat.assistant.embeddings import embed_texts

    evidence = [q["evidence"] for q in questions if q.get("article") and q.get("evidence")]
    return embed_texts([q["question"] for q in questions]), embed_texts(evidence)
