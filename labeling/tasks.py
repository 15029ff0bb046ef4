"""django-q2 entry points for labeling (ids and primitives in, one service call)."""

from __future__ import annotations

from labeling import services
from labeling.models import LabelingItem, SamplingPolicy


def sampling_run_all_task() -> dict[str, int]:
    """The scheduled run: every active policy, then top up items short of reviewers."""
    results = services.sampling_run_active()
    topped_up = services.items_top_up_assignments()
    return {
        "items_created": sum(result.created for result in results),
        "assignments_added": topped_up,
    }


def sampling_policy_run_task(policy_id: int) -> int:
    policy = SamplingPolicy.objects.filter(pk=policy_id).first()
    if policy is None:
        return 0
    return services.sampling_policy_run(policy=policy).created


def item_judge_task(item_id: int) -> int | None:
    """Score one item with the AI judge; a redelivered task finds it judged and stops."""
    item = LabelingItem.objects.filter(pk=item_id).first()
    if item is None:
        return None
    return services.item_judge(item=item).judge_score
