"""Every write to labeling data goes through these services.

Split by concern: sampling answers into items, reviewer assignments and labels
(consolidation, adjudication), AI judge scores and their validation, dataset snapshots.
"""

from labeling.services.judging import (
    item_judge,
    items_judge,
    judge_accept,
    judge_override,
    judge_override_with_humans,
)
from labeling.services.labels import (
    LabelingError,
    batch_agreement_refresh,
    item_adjudicate,
    item_assign_reviewers,
    item_consolidate_if_complete,
    items_top_up_assignments,
    label_better_answer_approve,
    label_submit,
)
from labeling.services.sampling import (
    SamplingResult,
    item_create_from_message,
    sampling_policy_run,
    sampling_run_active,
)
from labeling.services.snapshots import (
    SnapshotImmutableError,
    snapshot_create_from_labels,
    snapshot_create_from_rows,
    snapshot_update,
)

__all__ = [
    "LabelingError",
    "SamplingResult",
    "SnapshotImmutableError",
    "batch_agreement_refresh",
    "item_adjudicate",
    "item_assign_reviewers",
    "item_consolidate_if_complete",
    "item_create_from_message",
    "item_judge",
    "items_judge",
    "items_top_up_assignments",
    "judge_accept",
    "judge_override",
    "judge_override_with_humans",
    "label_better_answer_approve",
    "label_submit",
    "sampling_policy_run",
    "sampling_run_active",
    "snapshot_create_from_labels",
    "snapshot_create_from_rows",
    "snapshot_update",
]
