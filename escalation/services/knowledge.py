"""Learning from humans: a resolved conversation becomes a knowledge-base article draft,
published only when a reviewer approves it."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from chat.models import Article, Message, SupportAnswer
from chat.services import article_publish_set, article_save, support_answer_approve
from escalation.models import DomainEvent, KnowledgeDraft, Ticket
from escalation.services.events import event_record
from escalation.services.tickets import EscalationError, TicketStateConflict


def _draft_text(ticket: Ticket) -> tuple[str, str]:
    public = Message.objects.filter(
        conversation_id=ticket.conversation_id,
        visibility=Message.Visibility.PUBLIC,
        role__in=[Message.Role.CUSTOMER, Message.Role.AGENT],
    ).order_by("seq")
    questions = [m.text for m in public if m.role == Message.Role.CUSTOMER]
    answers = [m.text for m in public if m.role == Message.Role.AGENT]
    if not answers:
        raise EscalationError("No agent answer in this conversation to learn from.", code="empty")
    title = (questions[-1] if questions else f"Expert answer {ticket.pk}")[:180]
    body = "Question:\n" + "\n".join(questions) + "\n\nAnswer from our support team:\n"
    body += "\n\n".join(answers)
    if ticket.outcome_note:
        body += f"\n\nNote: {ticket.outcome_note}"
    return title, body


@transaction.atomic
def knowledge_draft_create(*, ticket: Ticket, author: User) -> KnowledgeDraft:
    """An unpublished expert article (source=expert) from a resolved ticket's conversation.

    Saved through chat's ``article_save`` (validated, embedded in the background) with
    ``is_published=False``: retrieval only sees it once a reviewer approves.
    """
    ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
    if ticket.status != Ticket.Status.RESOLVED:
        raise TicketStateConflict("Resolve the ticket first.", code="not_resolved")
    if ticket.knowledge_drafts.filter(status=KnowledgeDraft.Status.PENDING).exists():
        raise TicketStateConflict("A draft for this ticket is waiting for review.", code="exists")
    title, body = _draft_text(ticket)
    article = Article(
        slug=f"expert-{ticket.pk}-{ticket.knowledge_drafts.count()}-"
        f"{slugify(title)[:60] or 'answer'}",
        title=title,
        category="From our experts",
        body=body,
        is_published=False,
        source=Article.Source.EXPERT,
    )
    article_save(article=article)
    draft = KnowledgeDraft.objects.create(ticket=ticket, article=article, created_by=author)
    event_record(
        name=DomainEvent.Name.KNOWLEDGE_DRAFT_CREATED,
        conversation=ticket.conversation,
        ticket=ticket,
        payload={"article": article.slug},
    )
    return draft


@transaction.atomic
def knowledge_draft_review(
    *, draft: KnowledgeDraft, reviewer: User, approve: bool
) -> KnowledgeDraft:
    """Approve (publish the article) or reject a pending draft.

    Locks the draft; a second review of the same draft is refused. The reviewer needs
    ``escalation.approve_knowledgedraft``."""
    if not reviewer.has_perm("escalation.approve_knowledgedraft"):
        raise EscalationError("You may not review expert articles.", code="forbidden", status=403)
    locked = KnowledgeDraft.objects.select_for_update().select_related("article").get(pk=draft.pk)
    if locked.status != KnowledgeDraft.Status.PENDING:
        raise TicketStateConflict(f"This draft is already {locked.status}.", code="reviewed")
    locked.status = KnowledgeDraft.Status.APPROVED if approve else KnowledgeDraft.Status.REJECTED
    locked.reviewed_by = reviewer
    locked.reviewed_at = timezone.now()
    locked.save(update_fields=["status", "reviewed_by", "reviewed_at"])
    if approve:
        article_publish_set(article_ids=[locked.article_id], published=True)
        event_record(
            name=DomainEvent.Name.KNOWLEDGE_DRAFT_APPROVED,
            ticket=locked.ticket,
            payload={"article": locked.article.slug},
        )
    return locked


@transaction.atomic
def ticket_reply_approve(*, ticket: Ticket, approver: User) -> SupportAnswer:
    """Put the agent's public reply in a resolved (or closed) ticket into the answer
    memory (``chat.services.support_answer_approve``): the customer's question that
    escalated, and the agent's replies after it. Customers who later ask the same thing
    get the reply, cited "From our support team"; until a person with
    ``chat.approve_supportanswer`` approves it here, no other customer sees it.
    Approving the same ticket twice returns the approved answer."""
    ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
    if ticket.status not in (Ticket.Status.RESOLVED, Ticket.Status.CLOSED):
        raise TicketStateConflict("Resolve the ticket first.", code="not_resolved")
    public = Message.objects.filter(
        conversation_id=ticket.conversation_id, visibility=Message.Visibility.PUBLIC
    ).order_by("seq")
    trigger = ticket.trigger_message
    if trigger is None:
        trigger = public.filter(role=Message.Role.CUSTOMER).first()
    replies = list(
        public.filter(
            role=Message.Role.AGENT, seq__gt=trigger.seq if trigger else 0
        ).select_related("author")
    )
    if trigger is None or not replies:
        raise EscalationError("No agent reply in this conversation to remember.", code="empty")
    return support_answer_approve(
        question=trigger.text,
        answer="\n\n".join(m.text for m in replies),
        approved_by=approver,
        origin=SupportAnswer.Origin.AGENT,
        origin_ref=f"escalation.Ticket:{ticket.pk}",
        written_by=replies[0].author,
        message=replies[0],
    )
