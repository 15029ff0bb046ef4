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
