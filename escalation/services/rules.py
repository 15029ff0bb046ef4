"""The escalation rules and intent policies the reviewer decides by: written here, read
from a per-process copy that every write invalidates.

Every customer turn is reviewed against the enabled rules and the intent policies.
Reading both tables on every turn cost two queries and about twenty model instances per
turn, for rows that change when an admin edits them. So each server process keeps the
rows it read last (``rule_book``) together with a version token kept in the shared
cache (Redis in production). A turn reads the token (one cache round trip) and reloads
the rows only when it changed. Every write of a rule or a policy goes through the
services below, which set a new token once their transaction commits, so an edit applies
to the next message in every process, as the admin promises.

Why the token is set after commit and read before the rows: a process that read the
old token and then the rows (old or new) keeps them under the old token, and the next
turn sees the new one and reads again; it can never keep old rows under the new token.
A token missing from the cache (evicted, cleared) makes the next reader load the rows
and publish a fresh one. A write that bypasses these services (a data migration, a
``QuerySet.update`` in a shell) is seen after the next deploy or ``rules_changed()``.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass

from django.db import transaction

from chat.shared_cache import shared_cache, shared_redis
from escalation.models import EscalationRule, IntentPolicy
from escalation.services.intents import Policies, intent_policies

logger = logging.getLogger(__name__)

VERSION_KEY = "escalation:rules:version"


@dataclass(frozen=True)
class RuleBook:
    """Every rule (enabled or not, by priority then id) and the intent policies, as read
    under ``token``. Shared by the threads of a process: read it, never change it."""

    rules: tuple[EscalationRule, ...]
    policies: Policies
    token: str | bytes

    @property
    def enabled(self) -> tuple[EscalationRule, ...]:
        return tuple(rule for rule in self.rules if rule.enabled)


_book: RuleBook | None = None
_loading = threading.Lock()


def _token_current() -> str | bytes | None:
    """The shared version token, published now if missing; None when the cache is down
    (then the rows are read from the database, as before the cache). On Redis, the
    token's stored bytes (one GET on the process's client, read on every turn)."""
    cache = shared_cache()
    try:
        if (redis := shared_redis()) is not None:
            redis_cache, client = redis
            key = redis_cache.make_and_validate_key(VERSION_KEY)
            token: str | bytes | None = client.get(key)
            if token is None:
                cache.add(VERSION_KEY, uuid.uuid4().hex, timeout=None)
                token = client.get(key)
            return token
        token = cache.get(VERSION_KEY)
        if token is None:
            cache.add(VERSION_KEY, uuid.uuid4().hex, timeout=None)
            token = cache.get(VERSION_KEY)
    except Exception:
        logger.warning("escalation rules: the cache is unavailable, reading the rows")
        return None
    return token


def rule_book() -> RuleBook:
    """The rules and policies as of the last committed write: this process's copy when
    the shared token still matches it, else read again (two queries)."""
    global _book
    token = _token_current()
    book = _book
    if token is not None and book is not None and book.token == token:
        return book
    with _loading:  # concurrent turns of this process read the rows once
        book = _book
        if token is not None and book is not None and book.token == token:
            return book
        book = RuleBook(
            rules=tuple(EscalationRule.objects.order_by("priority", "pk")),
            policies=intent_policies(),
            token=token or "",
        )
        if token is not None:
            _book = book
        return book


def rules_changed() -> None:
    """Rules or policies were written in the current transaction: once it commits, every
    process reads them again on its next turn. This process forgets its copy at once, so
    that what runs next in the same transaction (or a test's) sees the write too."""
    rules_forget()

    def publish() -> None:
        try:
            shared_cache().set(VERSION_KEY, uuid.uuid4().hex, timeout=None)
        except Exception:
            # Unknowable which processes hold the old rows: at worst they keep them
            # until the cache is back and the next write, or a restart.
            logger.exception("escalation rules: could not publish the new version")

    transaction.on_commit(publish)


def rules_forget() -> None:
    """Forget this process's copy (tests that write rows behind the services' back)."""
    global _book
    _book = None


@transaction.atomic
def escalation_rule_save(*, rule: EscalationRule) -> EscalationRule:
    """Create or change a rule (the admin); applies to the next message everywhere."""
    rule.full_clean()
    rule.save()
    rules_changed()
    return rule


@transaction.atomic
def escalation_rule_delete(*, rule: EscalationRule) -> None:
    rule.delete()
    rules_changed()


@transaction.atomic
def intent_policy_save(*, policy: IntentPolicy) -> IntentPolicy:
    """Change a category's policy (the admin); applies to the next message everywhere."""
    policy.full_clean()
    policy.save()
    rules_changed()
    return policy
