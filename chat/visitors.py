"""Who is on the other end of a chat: a signed visitor token for anonymous customers,
the logged-in user otherwise, and who may open which conversation."""

from __future__ import annotations

import uuid
from typing import Any

from django.core import signing

from chat.access import is_support_staff
from chat.models import Conversation
from chat.ratelimits import Requester

VISITOR_COOKIE = "loopdesk_visitor"
VISITOR_SALT = "chat.visitor"
VISITOR_MAX_AGE = 365 * 24 * 3600


def visitor_token_issue(visitor_id: str | None = None) -> tuple[str, str]:
    """A new (or given) visitor id and its signed token; returns (visitor_id, token)."""
    visitor_id = visitor_id or uuid.uuid4().hex
    return visitor_id, signing.dumps(visitor_id, salt=VISITOR_SALT)


def visitor_id_from_token(token: str | None) -> str:
    """The visitor id a token was issued for, or "" when it is missing or forged."""
    if not token:
        return ""
    try:
        value = signing.loads(token, salt=VISITOR_SALT, max_age=VISITOR_MAX_AGE)
    except signing.BadSignature:
        return ""
    return value if isinstance(value, str) else ""


def rate_subject(*, user: Any, visitor_id: str, address: str = "") -> Requester:
    """Whom rate limits count against: the account, else the visitor; and the client
    address (``chat.clients``)."""
    if user is not None and user.is_authenticated:
        return Requester(identity=f"user:{user.pk}", address=address)
    return Requester(identity=f"visitor:{visitor_id}", address=address)


def conversation_audience(*, conversation: Conversation, user: Any, visitor_id: str) -> str | None:
    """ "customer" if this is the caller's own conversation, "agent" for agents, else None.

    A conversation belongs to its logged-in customer or to the visitor whose signed
    token started it. Support staff (``chat.access``) may join any.
    """
    authenticated = user is not None and user.is_authenticated
    if authenticated and conversation.customer_id == user.pk:
        return "customer"
    if visitor_id and conversation.visitor_id == visitor_id and conversation.customer_id is None:
        return "customer"
    if is_support_staff(user):
        return "agent"
    return None
