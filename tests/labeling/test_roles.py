"""Roles: reviewers label their own items; ML engineers manage snapshots and the judge."""

from __future__ import annotations

import pytest

from labeling import selectors

pytestmark = pytest.mark.django_db


def test_reviewers_label_but_do_not_manage(reviewer):
    assert reviewer.has_perm("labeling.change_label")
    for perm in (
        "labeling.see_all_labels",
        "labeling.validate_judge",
        "labeling.run_sampling",
        "labeling.add_datasetsnapshot",
        "labeling.change_datasetsnapshot",
    ):
        assert not reviewer.has_perm(perm), perm
    assert not selectors.user_sees_all_labels(reviewer)


def test_ml_engineers_manage_snapshots_and_validate_the_judge(ml_engineer):
    for perm in (
        "labeling.see_all_labels",
        "labeling.validate_judge",
        "labeling.run_sampling",
        "labeling.add_datasetsnapshot",
    ):
        assert ml_engineer.has_perm(perm), perm


def test_agents_have_no_labeling_access(agent):
    assert not any(perm.startswith("labeling.") for perm in agent.get_all_permissions())
