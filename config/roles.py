"""The support organisation's roles as Django groups with model permissions.

Each role lists permission patterns ``app_label.codename`` where the codename may hold
shell wildcards (``escalation.*``, ``chat.view_*``), and patterns ``excluded`` even so.
``roles_sync`` makes each group hold exactly the permissions its patterns match, so it can
run on every deploy. What each role may see and do is summed up in docs/security.md and
checked operation by operation in tests/test_authorization_matrix.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch

from django.contrib.auth.models import Group, Permission
from django.db import transaction

from accounts.services import CUSTOMERS_GROUP
from labeling.models import REVIEWERS_GROUP


@dataclass(frozen=True)
class Role:
    group: str
    staff: bool
    permissions: tuple[str, ...]
    description: str
    # Patterns taken out of what ``permissions`` matched (an admin-only power).
    excluded: tuple[str, ...] = ()


CUSTOMERS = CUSTOMERS_GROUP
AGENTS = "agents"
REVIEWERS = REVIEWERS_GROUP
ML_ENGINEERS = "ml_engineers"
ADMINS = "admins"

ROLES: dict[str, Role] = {
    CUSTOMERS: Role(
        group=CUSTOMERS,
        staff=False,
        permissions=(),
        description="Chat with the assistant and see their own conversations.",
    ),
    AGENTS: Role(
        group=AGENTS,
        staff=True,
        permissions=(
            "chat.view_*",
            # Support staff: joins customers' conversations (chat.access).
            "chat.handle_conversation",
            # Agents keep the assistant's knowledge base current (Article admin).
            "chat.add_article",
            "chat.change_article",
            # Everything in escalation except approving expert articles (reviewers do).
            "escalation.view_*",
            "escalation.add_*",
            "escalation.change_*",
            "escalation.delete_*",
        ),
        # Webhooks decide where events (conversation ids, notes, agents' names) are sent:
        # an admin's choice, not an agent's.
        excluded=("escalation.*_webhook", "escalation.*_webhookdelivery"),
        description="Work escalated conversations in the agent console.",
    ),
    REVIEWERS: Role(
        group=REVIEWERS,
        staff=True,
        permissions=(
            "chat.view_conversation",
            "chat.view_message",
            "labeling.view_*",
            "labeling.add_label",
            "labeling.change_label",
            "chat.view_article",
            "escalation.view_knowledgedraft",
            "escalation.approve_knowledgedraft",
            # The answer memory: better answers and agents' replies (resolved tickets)
            # customers may get later, approved and revoked by reviewers.
            "chat.view_supportanswer",
            "chat.approve_supportanswer",
            "escalation.view_ticket",
        ),
        description="Label the assistant's answers in the admin.",
    ),
    ML_ENGINEERS: Role(
        group=ML_ENGINEERS,
        staff=True,
        permissions=(
            "chat.view_*",
            # The intent router's versions and labelled rows.
            "chat.*_routerversion",
            "chat.delete_intentexample",
            "labeling.*",
            "training.*",
        ),
        description="Build datasets, run training, evaluate and deploy adapters.",
        # Deploying past the deployment gate (an evaluation not better than what is
        # live) is for admins, with a written reason.
        excluded=("training.force_deploy_adapter",),
    ),
    ADMINS: Role(
        group=ADMINS,
        staff=True,
        permissions=("*.*",),
        description="Everything, including users and settings.",
    ),
}


def permissions_matching(
    patterns: tuple[str, ...], excluded: tuple[str, ...] = ()
) -> list[Permission]:
    everything = Permission.objects.select_related("content_type")
    return [
        perm for perm in everything if _matches(perm, patterns) and not _matches(perm, excluded)
    ]


def _matches(perm: Permission, patterns: tuple[str, ...]) -> bool:
    return any(
        fnmatch(perm.content_type.app_label, pattern.split(".", 1)[0])
        and fnmatch(perm.codename, pattern.split(".", 1)[1])
        for pattern in patterns
    )


@transaction.atomic
def roles_sync() -> dict[str, int]:
    """Create the role groups and set their permissions; returns permissions per group."""
    counts = {}
    for role in ROLES.values():
        group, _ = Group.objects.get_or_create(name=role.group)
        perms = permissions_matching(role.permissions, role.excluded)
        group.permissions.set(perms)
        counts[role.group] = len(perms)
    return counts
