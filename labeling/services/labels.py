"""Reviewer assignments, submitted labels, consolidation, agreement and adjudication."""

from __future__ import annotations

import statistics

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from chat.errors import Conflict
from chat.models import Article, SupportAnswer
from chat.selectors import article_quoting
from chat.services import support_answer_approve
from labeling.models import REVIEWERS_GROUP, Label, LabelingBatch, LabelingItem
from labeling.selectors import batch_agreement


class LabelingError(Conflict):
    """A label move that is not allowed (not your assignment, already submitted, ...)."""

    code = "labeling_refused"


@transaction.atomic
def item_assign_reviewers(*, item: LabelingItem) -> list[Label]:
    """Give the item to the least-loaded active reviewers until it has enough.

    Locks the reviewers' user rows (in id order, so concurrent assignments queue rather
    than deadlock) before counting open assignments: two items sampled at once never
    both see the same reviewer as the least loaded. Ties go to the lower user id.
    """
    user_model = get_user_model()
    reviewer_ids = list(
        user_model.objects.select_for_update(of=("self",))
        .filter(groups__name=REVIEWERS_GROUP, is_active=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    locked = LabelingItem.objects.select_for_update().get(pk=item.pk)
    taken = set(locked.labels.values_list("reviewer_id", flat=True))
    needed = locked.reviewers_required - len(taken)
    free = [pk for pk in reviewer_ids if pk not in taken]
    if needed <= 0 or not free or locked.status != LabelingItem.Status.LABELING:
        return []
    loads = dict(
        Label.objects.filter(reviewer_id__in=free, status=Label.Status.ASSIGNED)
        .values_list("reviewer_id")
        .annotate(n=Count("pk"))
        .values_list("reviewer_id", "n")
    )
    chosen = sorted(free, key=lambda pk: (loads.get(pk, 0), pk))[:needed]
    return Label.objects.bulk_create(
        [Label(item=locked, reviewer_id=pk, status=Label.Status.ASSIGNED) for pk in chosen]
    )


def items_top_up_assignments() -> int:
    """Assign reviewers to open items that have fewer than they need (new reviewers)."""
    short = (
        LabelingItem.objects.filter(status=LabelingItem.Status.LABELING)
        .annotate(n=Count("labels", filter=Q(labels__reviewer__isnull=False)))
        .filter(n__lt=F("reviewers_required"))
        .values_list("pk", flat=True)
    )
    added = 0
    for pk in list(short.iterator(chunk_size=500)):
        added += len(item_assign_reviewers(item=LabelingItem(pk=pk)))
    return added


@transaction.atomic
def label_submit(
    *,
    label: Label,
    reviewer: AbstractBaseUser,
    score: int,
    better_answer: str = "",
    comment: str = "",
    source: str = Label.Source.CONSOLE,
) -> Label:
    """Submit a reviewer's label on their own assignment, then consolidate if complete.

    Locks the label row and re-checks it: only the assigned reviewer may submit, and
    only once (a second submit from a double click raises ``LabelingError``).
    """
    locked = Label.objects.select_for_update().get(pk=label.pk)
    if locked.reviewer_id != reviewer.pk:
        raise LabelingError("This item is not assigned to you.")
    if locked.status != Label.Status.ASSIGNED:
        raise LabelingError("You have already labeled this item.")
    if not 1 <= int(score) <= 5:
        raise LabelingError("The relevance score must be between 1 and 5.")
    locked.score = int(score)
    locked.better_answer = better_answer.strip()
    locked.comment = comment.strip()
    locked.status = Label.Status.SUBMITTED
    locked.source = source
    locked.submitted_at = timezone.now()
    locked.full_clean(validate_unique=False, validate_constraints=False)
    locked.save(
        update_fields=["score", "better_answer", "comment", "status", "source", "submitted_at"]
    )
    item_consolidate_if_complete(item=locked.item)
    return locked


@transaction.atomic
def item_consolidate_if_complete(*, item: LabelingItem, recompute: bool = False) -> bool:
    """Consolidate once every assigned label is in and enough reviewers labeled.

    Locks the item so the last two submitters cannot both consolidate. Stores the
    median and spread (max - min); a spread of ``LABELING_ADJUDICATION_SPREAD`` or more
    sends the item to the adjudication list (unless an expert already adjudicated it).
    ``recompute`` consolidates an already consolidated item again (labels re-imported).
    Refreshes the batch's agreement figure.
    """
    locked = LabelingItem.objects.select_for_update().get(pk=item.pk)
    if locked.status != LabelingItem.Status.LABELING and not recompute:
        return False
    labels = list(locked.labels.values_list("status", "score"))
    if any(status == Label.Status.ASSIGNED for status, _ in labels):
        return False
    scores = [score for _, score in labels if score is not None]
    if not scores or len(scores) < locked.reviewers_required:
        return False
    locked.median_score = float(statistics.median(scores))
    locked.score_spread = max(scores) - min(scores)
    locked.consolidated_at = timezone.now()
    locked.status = (
        LabelingItem.Status.ADJUDICATION
        if locked.score_spread >= settings.LABELING_ADJUDICATION_SPREAD
        and locked.adjudicated_score is None
        else LabelingItem.Status.CONSOLIDATED
    )
    locked.save(update_fields=["median_score", "score_spread", "consolidated_at", "status"])
    if locked.batch_id:
        batch_agreement_refresh(batch=LabelingBatch(pk=locked.batch_id))
    item.status = locked.status
    return True


@transaction.atomic
def batch_agreement_refresh(*, batch: LabelingBatch) -> LabelingBatch:
    """Recompute and store the batch's Krippendorff's alpha (ordinal)."""
    locked = LabelingBatch.objects.select_for_update().get(pk=batch.pk)
    figure = batch_agreement(batch=locked)
    locked.agreement_alpha = figure.alpha
    locked.agreement_items = figure.items
    locked.save(update_fields=["agreement_alpha", "agreement_items"])
    return locked


@transaction.atomic
def item_adjudicate(*, item: LabelingItem, score: int, by: AbstractBaseUser) -> LabelingItem:
    """An expert settles an item on the adjudication list; the item leaves the list."""
    locked = LabelingItem.objects.select_for_update().get(pk=item.pk)
    if locked.status != LabelingItem.Status.ADJUDICATION:
        raise LabelingError("Only items on the adjudication list can be adjudicated.")
    if not 1 <= int(score) <= 5:
        raise LabelingError("The adjudicated score must be between 1 and 5.")
    locked.adjudicated_score = int(score)
    locked.adjudicated_by = by  # type: ignore[assignment]
    locked.status = LabelingItem.Status.CONSOLIDATED
    locked.full_clean(validate_unique=False, validate_constraints=False)
    locked.save(update_fields=["adjudicated_score", "adjudicated_by", "status"])
    return locked


@transaction.atomic
def label_better_answer_approve(
    *, label: Label, approver: AbstractBaseUser, article: Article | None = None
) -> SupportAnswer:
    """Put a submitted label's better answer into the answer memory
    (``chat.services.support_answer_approve``): customers who later ask what the item's
    customer asked get it, cited "From our support team". ``article`` is the help
    article the answer concerns; by default the published article that quotes the
    better answer word for word, if one does.

    The approver needs ``chat.approve_supportanswer``; approving the same label twice
    returns the approved answer. Raises ``LabelingError`` for a label without a better
    answer."""
    locked = Label.objects.select_for_update().select_related("item").get(pk=label.pk)
    if locked.status != Label.Status.SUBMITTED or not locked.better_answer.strip():
        raise LabelingError(
            "Only a submitted label with a better answer can be approved.", code="no_better_answer"
        )
    return support_answer_approve(
        question=locked.item.question,
        answer=locked.better_answer,
        approved_by=approver,
        origin=SupportAnswer.Origin.REVIEWER,
        origin_ref=f"labeling.Label:{locked.pk}",
        written_by=locked.reviewer,
        article=article or article_quoting(text=locked.better_answer),
        message=locked.item.message,
    )
