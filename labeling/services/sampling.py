"""Sampling assistant answers into labeling items (random share, patterns, daily cap)."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from chat.models import CustomerFeedback, Message
from labeling.models import LabelingBatch, LabelingItem, SamplingPolicy
from labeling.selectors import answers_unsampled, manifest_source, source_hash


@dataclass
class SamplingResult:
    policy: SamplingPolicy
    batch: LabelingBatch | None
    created: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    capped: bool = False


def stable_fraction(message_id: int, salt: str) -> float:
    """A number in [0, 1) fixed per (answer, policy): a re-run never re-rolls the dice."""
    digest = hashlib.sha256(f"{salt}:{message_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@transaction.atomic
def item_create_from_message(
    *,
    message: Message,
    reason: str,
    batch: LabelingBatch | None = None,
    assign: bool = True,
    judge: bool = True,
) -> LabelingItem | None:
    """Make an item of an assistant answer; None when the answer was sampled before.

    The one-item-per-message constraint is the guard (a concurrent run loses the race
    inside a savepoint). Reviewers are assigned and the judge is queued after commit.
    """
    from labeling.services.labels import item_assign_reviewers

    question = message.reply_to.text if message.reply_to else ""
    feedback = (
        CustomerFeedback.objects.filter(conversation_id=message.conversation_id)
        .only("better_answer", "message_id")
        .first()
    )
    reference = ""
    if feedback and feedback.better_answer and feedback.message_id in (None, message.pk):
        reference = feedback.better_answer
    item = LabelingItem(
        message=message,
        conversation_id=message.conversation_id,
        batch=batch,
        reason=reason,
        question=question,
        answer=message.text,
        context=message.sources or [],
        provider=message.provider,
        model_name=message.model_name,
        adapter=message.adapter,
        reference_answer=reference,
        source_hash=source_hash(manifest_source(question, message.text)),
        reviewers_required=settings.LABELING_REVIEWERS_PER_ITEM,
    )
    item.full_clean(validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            item.save()
    except IntegrityError:
        return None
    if assign:
        item_assign_reviewers(item=item)
    if judge:
        _queue_judge(item)
    return item


def _queue_judge(item: LabelingItem) -> None:
    from django_q.tasks import async_task

    item_id = item.pk
    transaction.on_commit(lambda: async_task("labeling.tasks.item_judge_task", item_id))


def _day_start(now: dt.datetime) -> dt.datetime:
    local = timezone.localtime(now)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


@transaction.atomic
def sampling_policy_run(
    *, policy: SamplingPolicy, now: dt.datetime | None = None
) -> SamplingResult:
    """Sample new items for one policy, at most ``daily_cap`` per day.

    Locks the policy row, so two runs of the same policy (the schedule and a click)
    never both spend the day's cap. Pattern matches (escalated, negative sentiment, low
    rating) go first, oldest first; then the random share, stable per answer.
    """
    now = now or timezone.now()
    policy = SamplingPolicy.objects.select_for_update().get(pk=policy.pk)
    result = SamplingResult(policy=policy, batch=None)
    if policy.is_active:
        sampled_today = LabelingItem.objects.filter(
            batch__policy=policy, created_at__gte=_day_start(now)
        ).count()
        remaining = policy.daily_cap - sampled_today
        if remaining > 0:
            _sample(policy=policy, remaining=remaining, now=now, result=result)
        else:
            result.capped = True
    policy.last_run_at = now
    policy.save(update_fields=["last_run_at"])
    return result


def _sample(
    *, policy: SamplingPolicy, remaining: int, now: dt.datetime, result: SamplingResult
) -> None:
    candidates = answers_unsampled(low_rating_max=policy.low_rating_max)
    picks: list[tuple[int, str]] = []
    pattern_filters: list[tuple[str, str]] = []
    if policy.include_escalated:
        pattern_filters.append(("is_escalated", LabelingItem.Reason.ESCALATED))
    if policy.include_negative:
        pattern_filters.append(("is_negative", LabelingItem.Reason.NEGATIVE))
    if policy.low_rating_max is not None:
        pattern_filters.append(("is_low_rated", LabelingItem.Reason.LOW_RATING))
    picked: set[int] = set()
    if pattern_filters:
        rows = candidates.values_list("pk", *[flag for flag, _ in pattern_filters]).order_by(
            "created_at", "pk"
        )
        for pk, *flags in rows.iterator(chunk_size=2000):
            for (_, reason), flag in zip(pattern_filters, flags, strict=True):
                if flag:
                    picks.append((pk, reason))
                    picked.add(pk)
                    break
            if len(picks) >= remaining:
                break
    if len(picks) < remaining and policy.random_share > 0:
        salt = f"policy-{policy.pk}"
        for pk in (
            candidates.values_list("pk", flat=True)
            .order_by("created_at", "pk")
            .iterator(chunk_size=2000)
        ):
            if pk in picked or stable_fraction(pk, salt) >= policy.random_share:
                continue
            picks.append((pk, LabelingItem.Reason.RANDOM))
            if len(picks) >= remaining:
                break
    result.capped = len(picks) >= remaining
    if not picks:
        return
    batch = LabelingBatch.objects.create(
        name=f"{policy.name} {timezone.localtime(now):%Y-%m-%d %H:%M}", policy=policy
    )
    result.batch = batch
    messages = Message.objects.select_related("reply_to").in_bulk([pk for pk, _ in picks])
    for pk, reason in picks:
        if item_create_from_message(message=messages[pk], reason=reason, batch=batch):
            result.created += 1
            result.by_reason[reason] = result.by_reason.get(reason, 0) + 1


def sampling_run_active(*, now: dt.datetime | None = None) -> list[SamplingResult]:
    """Run every active policy (the scheduled entry point), each in its own transaction."""
    return [
        sampling_policy_run(policy=policy, now=now)
        for policy in SamplingPolicy.objects.filter(is_active=True).order_by("pk")
    ]
