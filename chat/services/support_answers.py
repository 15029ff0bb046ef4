"""Answer memory: writes to ``SupportAnswer`` (answers the support team approved for
reuse). Labeling (a reviewer's better answer) and escalation (an agent's reply) call
``support_answer_approve``; the admin revokes and restores.

Nothing enters the memory without a person with ``chat.approve_supportanswer`` saying so,
and personal data (e-mail addresses, card, IBAN and phone numbers) is replaced with
placeholders before the texts are stored: an answer written for one customer is shown to
others.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from chat.errors import Conflict, Forbidden
from chat.models import Article, Message, SupportAnswer
from chat.personal_data import redact_text
from chat.services.conversations import ChatError

APPROVE_PERMISSION = "chat.approve_supportanswer"


class SupportAnswerError(ChatError):
    """An approval or revocation the answer memory refuses."""


class SupportAnswerForbidden(Forbidden, SupportAnswerError):
    pass


class SupportAnswerConflict(Conflict, SupportAnswerError):
    pass


def _check_approver(user: Any) -> None:
    if user is None or not user.has_perm(APPROVE_PERMISSION):
        raise SupportAnswerForbidden(
            "You may not approve answers for reuse.", code="support_answer_forbidden"
        )


def _embed(row: SupportAnswer) -> None:
    """The question's and the answer's unit vectors by the current retrieval embedder,
    computed now: an approval is a rare, deliberate act, and the next customer should
    find it at once."""
    from chat.assistant.providers import embedder_current

    embedder = embedder_current()
    question, answer = embedder.embed_documents([row.question, row.answer])
    row.embedding = [round(float(x), 6) for x in question]
    row.answer_embedding = [round(float(x), 6) for x in answer]
    row.embedding_model = embedder.name


@transaction.atomic
def support_answer_approve(
    *,
    question: str,
    answer: str,
    approved_by: Any,
    origin: str,
    origin_ref: str,
    written_by: Any = None,
    article: Article | None = None,
    message: Message | None = None,
) -> SupportAnswer:
    """Approve ``answer`` to ``question`` for reuse: customers asking the same thing get
    it, cited "From our support team". ``origin_ref`` names where it came from (one
    approved answer per origin: approving it again returns the approved row).

    Raises ``SupportAnswerForbidden`` without ``chat.approve_supportanswer`` and
    ``SupportAnswerError`` for an empty question or answer. Both texts are stored with
    personal data replaced by placeholders.
    """
    _check_approver(approved_by)
    question, answer = redact_text(question.strip()), redact_text(answer.strip())
    if not question or not answer:
        raise SupportAnswerError(
            "Only a question with a written answer can be approved.", code="support_answer_empty"
        )
    existing = (
        SupportAnswer.objects.select_for_update()
        .filter(origin_ref=origin_ref, status=SupportAnswer.Status.APPROVED)
        .first()
    )
    if existing is not None:
        return existing
    row = SupportAnswer(
        question=question,
        answer=answer,
        article=article,
        origin=origin,
        origin_ref=origin_ref[:100],
        message=message,
        written_by=written_by,
        approved_by=approved_by,
        approved_at=timezone.now(),
    )
    _embed(row)
    row.full_clean()
    row.save()
    return row


@transaction.atomic
def support_answer_revoke(*, support_answer: SupportAnswer, by: Any) -> SupportAnswer:
    """Take an answer out of the memory: no customer gets it from now on (each server
    process sees the change within ``KNOWLEDGE_REFRESH_SECONDS``). Locks the row;
    revoking a revoked answer changes nothing."""
    _check_approver(by)
    locked = SupportAnswer.objects.select_for_update().get(pk=support_answer.pk)
    if locked.status == SupportAnswer.Status.REVOKED:
        return locked
    locked.status = SupportAnswer.Status.REVOKED
    locked.revoked_by = by
    locked.revoked_at = timezone.now()
    locked.full_clean()
    locked.save(update_fields=["status", "revoked_by", "revoked_at", "updated_at"])
    return locked


@transaction.atomic
def support_answer_restore(*, support_answer: SupportAnswer, by: Any) -> SupportAnswer:
    """Approve a revoked answer again (``by`` becomes its approver). Refused when another
    answer from the same origin was approved meanwhile."""
    _check_approver(by)
    locked = SupportAnswer.objects.select_for_update().get(pk=support_answer.pk)
    if locked.status == SupportAnswer.Status.APPROVED:
        return locked
    if SupportAnswer.objects.filter(
        origin_ref=locked.origin_ref, status=SupportAnswer.Status.APPROVED
    ).exists():
        raise SupportAnswerConflict(
            "Another answer from the same origin is approved.", code="support_answer_exists"
        )
    locked.status = SupportAnswer.Status.APPROVED
    locked.approved_by = by
    locked.approved_at = timezone.now()
    locked.revoked_by = None
    locked.revoked_at = None
    _embed(locked)  # the embedder may have changed since
    locked.full_clean()
    locked.save()
    return locked
