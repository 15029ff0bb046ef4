"""Escalation: the rules that decide when a person is needed, their audit trail, tickets,
agent presence, Step Functions callbacks, domain events with webhooks, and the knowledge
drafts learnt from expert conversations."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

# The most tickets the queue gives one agent at once (an agent's capacity is 1 to this).
AGENT_CAPACITY_MAX = 20


# Supervisors (admins) resolve, close and reassign tickets other agents handle.
SUPERVISOR_PERMISSION = "escalation.supervise_ticket"


class Priority(models.TextChoices):
    LOW = "low", "Low"
    NORMAL = "normal", "Normal"
    HIGH = "high", "High"
    URGENT = "urgent", "Urgent"


class EscalationRule(models.Model):
    """One configurable check of the decision workflow (edited in the admin).

    Thresholds by kind:
    - negative_sentiment: ``threshold`` is the VADER compound at or below which a message
      is negative (local mode); in bedrock mode the model's 0/1 answer is used as is.
    - toxicity: ``threshold`` starts the hold band, ``upper_threshold`` the harmful band
      (Comprehend's toxicity: below 0.4 proceed, 0.4-0.6 hold for a person, above 0.6 block).
    - repeated_no_answer: ``count`` "I don't know" turns in a row.
    - human_request / keyword: ``patterns``, one per line; ``re:`` starts a regex.
    - intent: the intent router; its per-category thresholds and switches are the
      ``IntentPolicy`` rows.
    """

    class Kind(models.TextChoices):
        INTENT = "intent", "Intent router"
        NEGATIVE_SENTIMENT = "negative_sentiment", "Negative sentiment"
        HUMAN_REQUEST = "human_request", "Customer asks for a person"
        TOXICITY = "toxicity", "Toxicity (Amazon Comprehend)"
        PROVIDER_FAILURE = "provider_failure", "Assistant failed"
        REPEATED_NO_ANSWER = "repeated_no_answer", 'Repeated "I don\'t know"'
        KEYWORD = "keyword", "Organisation keywords"

    name = models.CharField(max_length=120, unique=True)
    kind = models.CharField(max_length=24, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    # Lower runs first and wins when several rules fire on one turn.
    priority = models.PositiveSmallIntegerField(default=100)
    threshold = models.FloatField(null=True, blank=True)
    upper_threshold = models.FloatField(null=True, blank=True)
    count = models.PositiveSmallIntegerField(null=True, blank=True)
    patterns = models.TextField(blank=True, help_text="One phrase per line; re: for a regex.")
    ticket_priority = models.CharField(
        max_length=8, choices=Priority.choices, default=Priority.NORMAL
    )
    description = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        import re

        kind = self.Kind
        if self.kind == kind.NEGATIVE_SENTIMENT and self.threshold is None:
            raise ValidationError({"threshold": "A VADER compound threshold is required."})
        if self.kind == kind.TOXICITY:
            if self.threshold is None or self.upper_threshold is None:
                raise ValidationError("Toxicity needs a hold and a harmful threshold.")
            if not 0 <= self.threshold <= self.upper_threshold <= 1:
                raise ValidationError("Thresholds must satisfy 0 <= hold <= harmful <= 1.")
        if self.kind == kind.REPEATED_NO_ANSWER and not self.count:
            raise ValidationError({"count": "How many turns in a row?"})
        if self.kind in (kind.HUMAN_REQUEST, kind.KEYWORD):
            for line in self.pattern_lines():
                if line.startswith("re:"):
                    try:
                        re.compile(line[3:])
                    except re.error as exc:
                        raise ValidationError({"patterns": f"{line}: {exc}"}) from exc
            if self.kind == kind.KEYWORD and not self.pattern_lines():
                raise ValidationError({"patterns": "Add at least one keyword."})

    def pattern_lines(self) -> list[str]:
        return [line.strip() for line in self.patterns.splitlines() if line.strip()]


ESCALATING_INTENTS = [
    ("medical", "Medical emergency"),
    ("safety", "Safety hazard"),
    ("security", "Security or fraud"),
    ("vulnerable", "Vulnerable customer"),
    ("legal", "Legal or regulatory threat"),
    ("press", "Press or public exposure"),
    ("billing_dispute", "Billing dispute or overcharge"),
    ("churn", "Churn threat"),
    ("anger", "Anger or insult"),
    ("sarcasm", "Sarcasm"),
    ("frustration", "Frustration with the assistant or repeated contact"),
    ("human_request", "The customer asks for a person"),
]


class IntentPolicy(models.Model):
    """How one of the intent router's escalating categories is handled (edited in the
    admin; the reviewer reads the rows on every turn, so a change applies to the next
    message).

    - ``escalate``: messages of this category go to a person (untick to let the
      assistant answer them).
    - ``threshold``: the router's probability from which the category escalates; blank
      uses the live model's calibrated threshold (shown in the admin).
    - ``always_escalate``: also escalate whenever this category is the router's most
      likely class, whatever its probability.
    - ``customer_notice``: shown to the customer at once in the escalation notice,
      before a person joins (the safety advice for safety and medical messages).
    """

    label = models.CharField(max_length=30, unique=True, choices=ESCALATING_INTENTS)
    escalate = models.BooleanField(default=True, verbose_name="escalate to a person")
    always_escalate = models.BooleanField(default=False)
    threshold = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="0-1; blank: the live model's calibrated threshold.",
    )
    ticket_priority = models.CharField(
        max_length=8, choices=Priority.choices, default=Priority.NORMAL
    )
    customer_notice = models.TextField(
        blank=True, help_text="Shown to the customer at once, before a person joins."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["label"]
        verbose_name_plural = "intent policies"

    def __str__(self) -> str:
        return self.get_label_display()


class Decision(models.Model):
    """The audit trail: one row per rule evaluated on a turn, with what it saw."""

    class Outcome(models.TextChoices):
        PROCEED = "proceed", "Proceed"
        ESCALATE = "escalate", "Escalate to a person"
        HOLD = "hold", "Hold for human review"
        BLOCK = "block", "Block (harmful)"
        ERROR = "error", "Check failed"

    conversation = models.ForeignKey(
        "chat.Conversation", on_delete=models.CASCADE, related_name="escalation_decisions"
    )
    message = models.ForeignKey(
        "chat.Message",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="escalation_decisions",
    )
    # The turn the decision was made on (None for the button and agents stepping in).
    turn = models.ForeignKey(
        "chat.Turn",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="escalation_decisions",
    )
    rule = models.ForeignKey(
        EscalationRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rule_kind = models.CharField(max_length=24, choices=EscalationRule.Kind.choices)
    inputs = models.JSONField(default=dict, blank=True)
    score = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    detail = models.CharField(max_length=300, blank=True)
    # The intent router's category and the model version that made the decision.
    category = models.CharField(max_length=30, blank=True)
    model_version = models.CharField(max_length=80, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["conversation", "rule_kind", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.rule_kind}: {self.outcome}"

    @property
    def fired(self) -> bool:
        return self.outcome in (self.Outcome.ESCALATE, self.Outcome.HOLD, self.Outcome.BLOCK)


class Ticket(models.Model):
    """A conversation handed to people. Times are measured from ``handoff_at``."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ASSIGNED = "assigned", "Assigned"
        RESOLVED = "resolved", "Resolved"
        CLOSED = "closed", "Closed"

    class Outcome(models.TextChoices):
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        ABANDONED = "abandoned", "Abandoned"
        EXPIRED = "expired", "Expired"
        # The agent gave the conversation back to the assistant without resolving it.
        HANDED_BACK = "handed_back", "Handed back to the assistant"

    ACTIVE = (Status.OPEN, Status.ASSIGNED)

    conversation = models.ForeignKey(
        "chat.Conversation", on_delete=models.CASCADE, related_name="tickets"
    )
    reason = models.CharField(max_length=30)
    reason_detail = models.CharField(max_length=300, blank=True)
    priority = models.CharField(max_length=8, choices=Priority.choices, default=Priority.NORMAL)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    decision = models.ForeignKey(
        Decision, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    trigger_message = models.ForeignKey(
        "chat.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The customer-side signals at the handoff (sentiment label and score) for the inbox.
    sentiment = models.JSONField(default=dict, blank=True)
    # Nobody was on duty at the handoff: the customer was told and may leave a message.
    nobody_available = models.BooleanField(default=False)
    assigned_agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="escalation_tickets",
    )
    handoff_at = models.DateTimeField(auto_now_add=True, db_index=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    first_response_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, blank=True)
    outcome_note = models.TextField(blank=True)
    # The agent's answer at resolve time: was a person needed (None: not said)?
    person_needed = models.BooleanField(null=True, blank=True)
    agents_notified_at = models.DateTimeField(null=True, blank=True)
    workflow_execution_arn = models.CharField(max_length=2048, blank=True)
    # The agent the ticket last went back to the queue from (they did not reply in time,
    # went off duty or a supervisor moved it): the queue never offers it to them again.
    returned_from = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Who resolved or closed the ticket (None: the system, e.g. expiry).
    finished_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-handoff_at", "-id"]
        permissions = [
            ("supervise_ticket", "Can resolve or close tickets other agents handle"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation"],
                condition=Q(status__in=["open", "assigned"]),
                name="ticket_one_active_per_conversation",
            ),
        ]

    def __str__(self) -> str:
        return f"Ticket {self.pk} ({self.reason}, {self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def first_response_seconds(self) -> float | None:
        if self.first_response_at is None:
            return None
        return (self.first_response_at - self.handoff_at).total_seconds()

    @property
    def resolution_seconds(self) -> float | None:
        done = self.resolved_at or self.closed_at
        return None if done is None else (done - self.handoff_at).total_seconds()


class AgentPresence(models.Model):
    """Whether an agent takes escalations now (on duty and seen by a console socket), and
    how many the queue may give them at once."""

    agent = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="escalation_presence"
    )
    on_duty = models.BooleanField(default=False)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # Tickets the queue assigns to this agent at most at once; an agent taking a ticket
    # over themselves (or a supervisor assigning one) may go beyond it.
    capacity = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(AGENT_CAPACITY_MAX)]
    )
    # When the queue last assigned this agent a ticket: among agents with the same free
    # capacity the one assigned longest ago goes first (round robin).
    last_assigned_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.agent} ({'on duty' if self.on_duty else 'off duty'})"


class CannedReply(models.Model):
    title = models.CharField(max_length=120)
    body = models.TextField()
    enabled = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "title"]
        verbose_name_plural = "canned replies"

    def __str__(self) -> str:
        return self.title


class WorkflowCallback(models.Model):
    """A Step Functions task token for a ticket (``.waitForTaskToken``), answered once."""

    class State(models.TextChoices):
        WAITING = "waiting", "Waiting for the agent"
        SENDING = "sending", "Answer queued"
        ANSWERED = "answered", "Answered"
        FAILED = "failed", "Gave up"

    class Action(models.TextChoices):
        SUCCESS = "success", "SendTaskSuccess"
        FAILURE = "failure", "SendTaskFailure"

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="callbacks")
    task_token = models.TextField(unique=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.WAITING)
    action = models.CharField(max_length=10, choices=Action.choices, blank=True)
    output = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"Callback for ticket {self.ticket_id} ({self.state})"


class DomainEvent(models.Model):
    class Name(models.TextChoices):
        ESCALATION_CREATED = "ESCALATION_CREATED"
        HARMFUL_CONTENT_DETECTED = "HARMFUL_CONTENT_DETECTED"
        HUMAN_REVIEW_REQUESTED = "HUMAN_REVIEW_REQUESTED"
        RESPONSE_GENERATION_FAILED = "RESPONSE_GENERATION_FAILED"
        TAKEOVER_STARTED = "TAKEOVER_STARTED"
        HANDED_BACK = "HANDED_BACK"
        ESCALATION_RESOLVED = "ESCALATION_RESOLVED"
        ESCALATION_CLOSED = "ESCALATION_CLOSED"
        KNOWLEDGE_DRAFT_CREATED = "KNOWLEDGE_DRAFT_CREATED"
        KNOWLEDGE_DRAFT_APPROVED = "KNOWLEDGE_DRAFT_APPROVED"

    name = models.CharField(max_length=40, choices=Name.choices, db_index=True)
    conversation = models.ForeignKey(
        "chat.Conversation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="escalation_events",
    )
    ticket = models.ForeignKey(
        Ticket, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} #{self.pk}"


class Webhook(models.Model):
    """An endpoint that receives domain events, signed with HMAC-SHA256 of the body."""

    name = models.CharField(max_length=120)
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=200)
    # Event names to send; empty = all of them.
    events = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from escalation.webhooks import DestinationRefused, destination_check

        if not isinstance(self.events, list) or any(
            name not in DomainEvent.Name.values for name in self.events
        ):
            raise ValidationError({"events": "A list of known event names (empty = all)."})
        try:
            destination_check(self.url)
        except DestinationRefused as exc:
            raise ValidationError({"url": str(exc)}) from exc

    def wants(self, event_name: str) -> bool:
        return self.enabled and (not self.events or event_name in self.events)


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(DomainEvent, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["webhook", "event"], name="delivery_once_per_event")
        ]

    def __str__(self) -> str:
        return f"{self.event} -> {self.webhook} ({self.status})"


class KnowledgeDraft(models.Model):
    """An unpublished expert article from a resolved ticket, waiting for a reviewer."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for review"
        APPROVED = "approved", "Approved and published"
        REJECTED = "rejected", "Rejected"

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="knowledge_drafts")
    article = models.OneToOneField(
        "chat.Article", on_delete=models.CASCADE, related_name="knowledge_draft"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("approve_knowledgedraft", "Can approve expert article drafts")]

    def __str__(self) -> str:
        return f"Draft: {self.article}"
