"""Who counts as support staff: the one definition every app uses.

Support staff (agents and admins) may join any customer's conversation, see withheld
drafts and internal notes, and work tickets. Reviewers and ML engineers read what their
own consoles show them, but are not support staff: they never join a live conversation.
The permission is granted to roles in ``config/roles.py``.
"""

from __future__ import annotations

from typing import Any

SUPPORT_STAFF_PERMISSION = "chat.handle_conversation"


def is_support_staff(user: Any) -> bool:
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_active
        and user.has_perm(SUPPORT_STAFF_PERMISSION)
    )


def support_staff_users() -> Any:
    """``is_support_staff`` as a query: active users holding the permission through a
    group, directly, or as superusers."""
    from django.contrib.auth import get_user_model
    from django.db.models import Q

    app_label, codename = SUPPORT_STAFF_PERMISSION.split(".")
    holds = Q(
        groups__permissions__codename=codename,
        groups__permissions__content_type__app_label=app_label,
    ) | Q(
        user_permissions__codename=codename,
        user_permissions__content_type__app_label=app_label,
    )
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(holds | Q(is_superuser=True))
        .distinct()
    )
