"""Versioned, immutable training sets frozen from labels."""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import Any, NoReturn

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Max

from chat.errors import Conflict
from labeling.models import DatasetSnapshot, SnapshotRow
from labeling.redaction import redact_row
from labeling.selectors import snapshot_source_items

logger = logging.getLogger(__name__)

DESIRABLE_MIN_SCORE = 4.0


class SnapshotImmutableError(Conflict):
    """Snapshots never change once frozen; make a new version instead."""

    code = "snapshot_frozen"


def snapshot_update(*, snapshot: DatasetSnapshot, **changes: Any) -> NoReturn:
    """Always refuses: a snapshot and its rows are frozen at creation."""
    raise SnapshotImmutableError(
        f"{snapshot} is frozen; create a new version instead of changing it."
    )


@transaction.atomic
def snapshot_create_from_rows(
    *,
    name: str,
    rows: dict[str, list[dict[str, Any]]],
    created_by: AbstractBaseUser | None = None,
    filters: dict[str, Any] | None = None,
    description: str = "",
    redacted: bool = False,
) -> DatasetSnapshot:
    """Freeze rows (keyed by ``SnapshotRow.Kind``) into the next version of ``name``."""
    unknown = set(rows) - set(SnapshotRow.Kind.values)
    if unknown:
        raise ValueError(f"unknown row kinds: {sorted(unknown)}")
    version = (
        DatasetSnapshot.objects.select_for_update()
        .filter(name=name)
        .aggregate(v=Max("version"))["v"]
        or 0
    ) + 1
    snapshot = DatasetSnapshot.objects.create(  # type: ignore[misc]
        name=name,
        version=version,
        created_by=created_by,
        filters=filters or {},
        description=description,
        redacted=redacted,
        row_counts={kind: len(kind_rows) for kind, kind_rows in rows.items()},
    )
    SnapshotRow.objects.bulk_create(
        SnapshotRow(snapshot=snapshot, kind=kind, position=i, data=data)
        for kind, kind_rows in rows.items()
        for i, data in enumerate(kind_rows)
    )
    return snapshot


def split_of(prompt: str, *, test_share: float) -> str:
    """ "test" for a stable share of prompts: every row about one question lands in the
    same split, so no question leaks from training into the held-out set."""
    digest = hashlib.sha256(" ".join(prompt.lower().split()).encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_share else "train"


def _takeover_pairs() -> Iterator[dict[str, Any]]:
    try:
        from escalation.selectors import takeover_pairs  # type: ignore[attr-defined]
    except ImportError:
        logger.info("escalation.selectors.takeover_pairs is not available; no takeover pairs")
        return iter(())
    return takeover_pairs()


def snapshot_rows_from_labels(
    *, filters: dict[str, Any] | None = None, include_takeovers: bool = True
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    """Training rows from consolidated labels (see ``snapshot_create_from_labels``) and
    how many pairs came from each origin (better_answer, rating, takeover)."""
    scored: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    kto: list[dict[str, Any]] = []
    seen_pairs: set[tuple[str, str, str]] = set()
    origins: dict[str, int] = defaultdict(int)
    seen_desirable: set[tuple[str, str]] = set()

    def add_pair(prompt: str, chosen: str, rejected: str, origin: str) -> None:
        key = (prompt, chosen.strip(), rejected.strip())
        if not prompt or not key[1] or not key[2] or key[1] == key[2] or key in seen_pairs:
            return
        seen_pairs.add(key)
        pairs.append({"prompt": prompt, "chosen": key[1], "rejected": key[2]})
        origins[origin] += 1

    by_question: dict[str, list[tuple[float, str]]] = defaultdict(list)
    by_question_prompt: dict[str, str] = {}
    for item, better_answers in snapshot_source_items(filters=filters or {}):
        score = item.final_score
        if score is None:
            continue
        scored.append({"prompt": item.question, "response": item.answer, "score": score})
        kto.append(
            {
                "prompt": item.question,
                "completion": item.answer,
                "label": score >= DESIRABLE_MIN_SCORE,
            }
        )
        for better in [*better_answers, item.reference_answer]:
            if better and better.strip() != item.answer.strip():
                add_pair(item.question, better, item.answer, "better_answer")
                if (item.question, better.strip()) not in seen_desirable:
                    seen_desirable.add((item.question, better.strip()))
                    kto.append(
                        {"prompt": item.question, "completion": better.strip(), "label": True}
                    )
        by_question[" ".join(item.question.lower().split())].append((score, item.answer))
        by_question_prompt.setdefault(" ".join(item.question.lower().split()), item.question)

    for key, answers in by_question.items():
        for (score_a, answer_a), (score_b, answer_b) in itertools.combinations(answers, 2):
            if score_a == score_b:
                continue
            high, low = (answer_a, answer_b) if score_a > score_b else (answer_b, answer_a)
            add_pair(by_question_prompt[key], high, low, "rating")

    if include_takeovers:
        for pair in _takeover_pairs():
            add_pair(pair["prompt"], pair["chosen"], pair["rejected"], "takeover")
    rows: dict[str, list[dict[str, Any]]] = {"scored": scored, "pair": pairs, "kto": kto}
    return rows, dict(origins)


def snapshot_create_from_labels(
    *,
    name: str,
    created_by: AbstractBaseUser | None = None,
    filters: dict[str, Any] | None = None,
    test_share: float = 0.1,
    redact: bool = False,
    include_takeovers: bool = True,
    description: str = "",
) -> DatasetSnapshot:
    """Freeze the consolidated labels matching ``filters`` into the next version of ``name``.

    Rows: scored {prompt, response, score}; preference pairs {prompt, chosen, rejected}
    from reviewers' and customers' better answers vs. the original, takeover pairs, and
    higher- vs. lower-rated answers to the same question; KTO {prompt, completion,
    label} with desirable = score >= 4. Each row gets a stable "split"; ``redact``
    replaces e-mail addresses, phone, card and IBAN numbers. Who, when and the filter
    are stored on the snapshot.
    """
    if not 0 <= test_share < 1:
        raise ValueError("test_share must be in [0, 1)")
    rows, origins = snapshot_rows_from_labels(filters=filters, include_takeovers=include_takeovers)
    for kind_rows in rows.values():
        for row in kind_rows:
            row["split"] = split_of(row["prompt"], test_share=test_share)
        if redact:
            kind_rows[:] = [redact_row(row) for row in kind_rows]
    return snapshot_create_from_rows(
        name=name,
        rows=rows,
        created_by=created_by,
        filters={
            **(filters or {}),
            "test_share": test_share,
            "include_takeovers": include_takeovers,
            "pair_origins": origins,
        },
        description=description,
        redacted=redact,
    )
