"""Reads over labeling data that are more than a ``.get``."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

from chat.models import CustomerFeedback, Message
from chat.selectors import turns_negative
from labeling.models import DatasetSnapshot, Label, LabelingBatch, LabelingItem, SnapshotRow

# Judge-human agreement needs at least this many items before it counts.
JUDGE_AGREEMENT_MIN_ITEMS = 10


def snapshot_rows(
    *, snapshot: DatasetSnapshot, kind: str, split: str | None = None
) -> Iterator[dict[str, Any]]:
    """Rows of one kind in a stable order, optionally only one split ("train"/"test")."""
    rows = SnapshotRow.objects.filter(snapshot=snapshot, kind=kind).order_by("position")
    for data in rows.values_list("data", flat=True).iterator(chunk_size=2000):
        if split is None or data.get("split", "train") == split:
            yield data


# --- sampling ------------------------------------------------------------------------------


def manifest_source(question: str, answer: str) -> str:
    """The Ground Truth ``source`` of an item: "question,answer" as in the blog."""
    return f"{question},{answer}"


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def answers_unsampled(*, low_rating_max: int | None = None) -> QuerySet[Message]:
    """Public assistant answers (with the question they reply to) not yet sampled.

    Annotated with the sampling patterns: ``is_escalated`` (the conversation holds a
    withheld assistant draft or agent messages), ``is_negative`` (the turn's sentiment
    check found the question clearly negative, ``chat.selectors.turns_negative``) and
    ``is_low_rated`` (the customer rated the conversation at or below
    ``low_rating_max``).
    """
    escalated = Message.objects.filter(conversation_id=OuterRef("conversation_id")).filter(
        Q(role=Message.Role.AGENT)
        | Q(role=Message.Role.ASSISTANT, visibility=Message.Visibility.WITHHELD)
    )
    low_rated = CustomerFeedback.objects.filter(
        conversation_id=OuterRef("conversation_id"),
        score__lte=low_rating_max if low_rating_max is not None else 0,
    )
    negative = turns_negative().filter(customer_message_id=OuterRef("reply_to_id"))
    return Message.objects.filter(
        role=Message.Role.ASSISTANT,
        visibility=Message.Visibility.PUBLIC,
        reply_to__isnull=False,
        labeling_item__isnull=True,
    ).annotate(
        is_escalated=Exists(escalated),
        is_low_rated=Exists(low_rated),
        is_negative=Exists(negative),
    )


# --- reviewer console --------------------------------------------------------------------


def user_sees_all_labels(user: Any) -> bool:
    return bool(user.is_superuser or user.has_perm("labeling.see_all_labels"))


def labels_visible_to(*, user: Any) -> QuerySet[Label]:
    """Labels a user may see: everyone's for ML engineers, otherwise only their own.

    A reviewer never sees another reviewer's label, in any view or API.
    """
    labels = Label.objects.select_related("item", "reviewer")
    if user_sees_all_labels(user):
        return labels
    return labels.filter(reviewer_id=user.pk)


def reviewer_queue(*, reviewer: Any) -> QuerySet[Label]:
    """The reviewer's open assignments, oldest first (a constant number of queries)."""
    return (
        Label.objects.filter(reviewer_id=reviewer.pk, status=Label.Status.ASSIGNED)
        .select_related("item")
        .defer("item__context")
        .order_by("assigned_at", "pk")
    )


def reviewer_next_label(*, reviewer: Any, after: Label | None = None) -> Label | None:
    queue = reviewer_queue(reviewer=reviewer)
    if after is not None:
        queue = queue.exclude(pk=after.pk)
    return queue.first()


def items_visible_to(*, user: Any) -> QuerySet[LabelingItem]:
    """Items with consolidation for ML engineers; for reviewers only their assignments."""
    items = LabelingItem.objects.select_related("batch")
    if user_sees_all_labels(user):
        return items
    return items.filter(labels__reviewer_id=user.pk)


# --- agreement -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """Krippendorff's alpha (ordinal) and the number of items it rests on.

    ``alpha`` is None when it is undefined (fewer than two items with two ratings, or no
    variation at all in the ratings).
    """

    alpha: float | None
    items: int


def ordinal_alpha(units: list[dict[str, float]]) -> Agreement:
    """Krippendorff's alpha for ordinal 1-5 ratings; ``units`` maps rater -> score."""
    import krippendorff

    pairable = [unit for unit in units if len(unit) >= 2]
    values = {score for unit in pairable for score in unit.values()}
    if len(pairable) < 2 or len(values) < 2:
        return Agreement(alpha=None, items=len(pairable))
    raters = sorted({rater for unit in pairable for rater in unit})
    matrix = np.full((len(raters), len(pairable)), np.nan)
    index = {rater: i for i, rater in enumerate(raters)}
    for column, unit in enumerate(pairable):
        for rater, score in unit.items():
            matrix[index[rater], column] = score
    alpha = krippendorff.alpha(
        reliability_data=matrix, level_of_measurement="ordinal", value_domain=[1, 2, 3, 4, 5]
    )
    return Agreement(alpha=None if np.isnan(alpha) else float(alpha), items=len(pairable))


def _rater(reviewer_id: int | None, worker_id: str) -> str:
    return f"user:{reviewer_id}" if reviewer_id else f"worker:{worker_id}"


def _consolidated_units(items: QuerySet[LabelingItem]) -> dict[int, dict[str, float]]:
    units: dict[int, dict[str, float]] = defaultdict(dict)
    rows = Label.objects.filter(
        item__in=items.exclude(status=LabelingItem.Status.LABELING),
        status=Label.Status.SUBMITTED,
    ).values_list("item_id", "reviewer_id", "worker_id", "score")
    for item_id, reviewer_id, worker_id, score in rows.iterator(chunk_size=5000):
        if score is not None:
            units[item_id][_rater(reviewer_id, worker_id)] = float(score)
    return units


def batch_agreement(*, batch: LabelingBatch) -> Agreement:
    """Inter-annotator agreement over a batch's consolidated items."""
    units = _consolidated_units(LabelingItem.objects.filter(batch=batch))
    return ordinal_alpha(list(units.values()))


@dataclass(frozen=True)
class ReviewerAgreement:
    reviewer: str
    alpha: float | None
    items: int


def reviewer_agreements(*, items: QuerySet[LabelingItem] | None = None) -> list[ReviewerAgreement]:
    """Per reviewer: alpha between their score and each colleague's score on the same
    consolidated item (one pair per colleague and item). Low or negative = often out
    of line with colleagues; ``items`` counts the items, not the pairs."""
    from django.contrib.auth import get_user_model

    units = _consolidated_units(items if items is not None else LabelingItem.objects.all())
    per_rater: dict[str, list[dict[str, float]]] = defaultdict(list)
    item_counts: dict[str, int] = defaultdict(int)
    for unit in units.values():
        for rater, score in unit.items():
            others = [value for other, value in unit.items() if other != rater]
            if others:
                item_counts[rater] += 1
            per_rater[rater].extend({"self": score, "other": value} for value in others)
    user_ids = [int(rater.split(":", 1)[1]) for rater in per_rater if rater.startswith("user:")]
    names = dict(get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username"))
    result = []
    for rater, rater_units in sorted(per_rater.items()):
        kind, ident = rater.split(":", 1)
        name = names.get(int(ident), rater) if kind == "user" else ident
        figure = ordinal_alpha(rater_units)
        result.append(
            ReviewerAgreement(reviewer=str(name), alpha=figure.alpha, items=item_counts[rater])
        )
    return result


@dataclass(frozen=True)
class JudgeAgreement:
    """How well the AI judge agrees with consolidated human scores."""

    alpha: float | None
    items: int
    threshold: float
    min_items: int
    usable: bool


def judge_human_agreement(*, items: QuerySet[LabelingItem] | None = None) -> JudgeAgreement:
    """Krippendorff's alpha (ordinal) between the judge's raw scores and the reviewers'
    consolidated scores. ``usable``: the judge may serve as a reward source (alpha at
    least ``LABELING_JUDGE_MIN_AGREEMENT`` over at least ``JUDGE_AGREEMENT_MIN_ITEMS``)."""
    base = items if items is not None else LabelingItem.objects.all()
    rows = (
        base.filter(status=LabelingItem.Status.CONSOLIDATED, judge_score__isnull=False)
        .values_list("judge_score", "median_score", "adjudicated_score")
        .iterator(chunk_size=5000)
    )
    units = []
    for judge, median, adjudicated in rows:
        human = adjudicated if adjudicated is not None else median
        if judge is not None and human is not None:
            units.append({"judge": float(judge), "humans": float(human)})
    figure = ordinal_alpha(units)
    threshold = settings.LABELING_JUDGE_MIN_AGREEMENT
    usable = (
        figure.alpha is not None
        and figure.items >= JUDGE_AGREEMENT_MIN_ITEMS
        and figure.alpha >= threshold
    )
    return JudgeAgreement(
        alpha=figure.alpha,
        items=figure.items,
        threshold=threshold,
        min_items=JUDGE_AGREEMENT_MIN_ITEMS,
        usable=usable,
    )


# --- snapshots -----------------------------------------------------------------------------


def consolidated_items(*, filters: dict[str, Any]) -> QuerySet[LabelingItem]:
    """Consolidated items (adjudicated ones included) matching a snapshot filter:
    ``batch_ids``, ``reasons``, ``since`` / ``until`` (ISO dates of consolidation),
    ``adapter``."""
    items = LabelingItem.objects.filter(status=LabelingItem.Status.CONSOLIDATED)
    if filters.get("batch_ids"):
        items = items.filter(batch_id__in=filters["batch_ids"])
    if filters.get("reasons"):
        items = items.filter(reason__in=filters["reasons"])
    if filters.get("since"):
        items = items.filter(consolidated_at__date__gte=filters["since"])
    if filters.get("until"):
        items = items.filter(consolidated_at__date__lte=filters["until"])
    if filters.get("adapter"):
        items = items.filter(adapter=filters["adapter"])
    return items.order_by("pk")


def snapshot_source_items(*, filters: dict[str, Any]) -> Iterator[tuple[LabelingItem, list[str]]]:
    """(item, reviewers' better answers) for every item a snapshot draws from."""
    better = Label.objects.filter(status=Label.Status.SUBMITTED).exclude(better_answer="")
    items = consolidated_items(filters=filters).prefetch_related(
        Prefetch("labels", queryset=better.only("item_id", "better_answer"), to_attr="better")
    )
    for item in items.iterator(chunk_size=1000):
        yield item, [label.better_answer for label in item.better]  # type: ignore[attr-defined]
