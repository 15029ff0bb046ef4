"""AI judge scores on items and the experts' validation of them."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from labeling.judge import JudgeResult, judge_score, judge_scores
from labeling.models import LabelingItem


def item_judge(*, item: LabelingItem, force: bool = False) -> LabelingItem:
    """Score the item with the configured judge and store score, comment and method.

    Idempotent: an item already judged is left alone unless ``force``. The judge call
    (possibly a network round trip) runs outside any transaction; the write re-reads
    the row under a lock.
    """
    if item.judged_at is not None and not force:
        return item
    result = judge_score(
        question=item.question, answer=item.answer, reference=item.reference_answer or None
    )
    return _store_judgement(item=item, result=result, force=force)


def items_judge(*, items: Iterable[LabelingItem], force: bool = False) -> int:
    """Judge many items in one batch (the local judge embeds them together)."""
    todo = [item for item in items if force or item.judged_at is None]
    results = judge_scores(
        [(item.question, item.answer, item.reference_answer or None) for item in todo]
    )
    for item, result in zip(todo, results, strict=True):
        _store_judgement(item=item, result=result, force=force)
    return len(todo)


def _store_judgement(*, item: LabelingItem, result: JudgeResult, force: bool) -> LabelingItem:
    with transaction.atomic():
        locked = LabelingItem.objects.select_for_update().get(pk=item.pk)
        if locked.judged_at is not None and not force:
            return locked
        locked.judge_score = result.score
        locked.judge_comment = result.comment
        locked.judge_method = result.method
        locked.judged_at = timezone.now()
        locked.judge_review = LabelingItem.JudgeReview.UNREVIEWED
        locked.judge_validated_score = None
        locked.judge_validated_by = None
        locked.full_clean(validate_unique=False, validate_constraints=False)
        locked.save(
            update_fields=[
                "judge_score",
                "judge_comment",
                "judge_method",
                "judged_at",
                "judge_review",
                "judge_validated_score",
                "judge_validated_by",
            ]
        )
    return locked


@transaction.atomic
def judge_accept(*, items: Iterable[LabelingItem], by: AbstractBaseUser) -> int:
    """Experts accept the AI score as it is (bulk). Items without a score are skipped."""
    ids = [item.pk for item in items]
    count = 0
    for item in LabelingItem.objects.select_for_update().filter(
        pk__in=ids, judge_score__isnull=False
    ):
        item.judge_review = LabelingItem.JudgeReview.ACCEPTED
        item.judge_validated_score = item.judge_score
        item.judge_validated_by = by  # type: ignore[assignment]
        item.save(update_fields=["judge_review", "judge_validated_score", "judge_validated_by"])
        count += 1
    return count


@transaction.atomic
def judge_override(*, item: LabelingItem, score: int, by: AbstractBaseUser) -> LabelingItem:
    """An expert replaces the AI score with their own (1-5)."""
    if not 1 <= int(score) <= 5:
        raise ValueError("score must be between 1 and 5")
    locked = LabelingItem.objects.select_for_update().get(pk=item.pk)
    locked.judge_review = LabelingItem.JudgeReview.OVERRIDDEN
    locked.judge_validated_score = int(score)
    locked.judge_validated_by = by  # type: ignore[assignment]
    locked.save(update_fields=["judge_review", "judge_validated_score", "judge_validated_by"])
    return locked


@transaction.atomic
def judge_override_with_humans(*, items: Iterable[LabelingItem], by: AbstractBaseUser) -> int:
    """Bulk override: replace each AI score with the reviewers' consolidated score."""
    count = 0
    ids = [item.pk for item in items]
    for item in LabelingItem.objects.select_for_update().filter(
        pk__in=ids, median_score__isnull=False
    ):
        human = item.final_score
        assert human is not None
        judge_override(item=item, score=int(human + 0.5), by=by)
        count += 1
    return count
