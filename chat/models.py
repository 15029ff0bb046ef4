"""Conversations between customers, the assistant and agents, and the knowledge base."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


class Conversation(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ENDED = "ended", "Ended"

    class Handling(models.TextChoices):
        """Who answers the customer right now; only ASSISTANT lets the bot speak."""

        ASSISTANT = "assistant", "Assistant"
        WAITING_FOR_HUMAN = "waiting_for_human", "Waiting for a person"
        HUMAN = "human", "Agent"

    class Channel(models.TextChoices):
        WEB = "web", "Web chat"
        API = "api", "API"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="conversations",
    )
    # Subject of the signed visitor token for anonymous customers.
    visitor_id = models.CharField(max_length=64, blank=True, db_index=True)
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.WEB)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    handling = models.CharField(max_length=20, choices=Handling.choices, default=Handling.ASSISTANT)
    assigned_agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_conversations",
    )
    # Highest sequence number handed out; incremented under a row lock.
    last_seq = models.PositiveIntegerField(default=0)
    # Set when something went wrong that a person should look at (e.g. provider failure).
    needs_attention = models.BooleanField(default=False)
    attention_reason = models.CharField(max_length=200, blank=True)
    # Adapter pinned for this conversation (multi-adapter serving); blank = the live one.
    adapter_name = models.CharField(max_length=100, blank=True)
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["status", "handling", "-updated_at"])]

    def __str__(self) -> str:
        return self.title or f"Conversation {str(self.id)[:8]}"

    @property
    def assistant_may_answer(self) -> bool:
        return self.handling == self.Handling.ASSISTANT and self.status == self.Status.OPEN


class Message(models.Model):
    class Role(models.TextChoices):
        CUSTOMER = "customer", "Customer"
        ASSISTANT = "assistant", "Assistant"
        AGENT = "agent", "Agent"
        SYSTEM = "system", "System"

    class Visibility(models.TextChoices):
        PUBLIC = "public", "Shown to the customer"
        WITHHELD = "withheld", "Withheld draft (agents only)"
        INTERNAL = "internal", "Internal note (agents only)"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    seq = models.PositiveIntegerField()
    # Client-generated id; a retried send with the same id never creates a second message.
    client_id = models.CharField(max_length=64, blank=True)
    role = models.CharField(max_length=10, choices=Role.choices)
    visibility = models.CharField(
        max_length=10, choices=Visibility.choices, default=Visibility.PUBLIC
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="chat_messages",
    )
    text = models.TextField()
    # Knowledge-base passages cited under an assistant answer: [{slug, title, score}].
    sources = models.JSONField(default=list, blank=True)
    # Internal checks (sentiment, retrieval scores, ...): audit only, never sent to customers.
    internal = models.JSONField(default=dict, blank=True)
    provider = models.CharField(max_length=20, blank=True)
    model_name = models.CharField(max_length=200, blank=True)
    adapter = models.CharField(max_length=100, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="message_unique_seq"),
            models.UniqueConstraint(
                fields=["conversation", "client_id"],
                condition=~Q(client_id=""),
                name="message_unique_client_id",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.role}: {self.text[:40]}"


class Article(models.Model):
    """A knowledge-base article the assistant retrieves from and cites."""

    class Source(models.TextChoices):
        MANUAL = "manual", "Written by the team"
        EXPERT = "expert", "From an expert conversation"

    slug = models.SlugField(max_length=120, unique=True)
    title = models.CharField(max_length=200)
    category = models.CharField(max_length=80, blank=True)
    body = models.TextField()
    is_published = models.BooleanField(default=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.MANUAL)
    # Unit-normalised embedding of title + body, computed in the background after a save.
    embedding = models.JSONField(null=True, blank=True, editable=False)
    embedding_model = models.CharField(max_length=120, blank=True, editable=False)
    embedded_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["category", "title"]

    def __str__(self) -> str:
        return self.title


class CustomerFeedback(models.Model):
    """The customer's 1-5 rating at the end of a conversation (the RLHF blog's scale)."""

    class Score(models.IntegerChoices):
        STRONGLY_DISAGREE = 1, "Strongly disagree"
        DISAGREE = 2, "Disagree"
        NEUTRAL = 3, "Neither agree nor disagree"
        AGREE = 4, "Agree"
        STRONGLY_AGREE = 5, "Strongly agree"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="feedback"
    )
    # The answer rated; blank means the conversation as a whole (rated on its last answer).
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="feedback"
    )
    score = models.PositiveSmallIntegerField(
        choices=Score.choices, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    better_answer = models.TextField(blank=True)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["conversation"], name="feedback_one_per_conversation"),
            models.CheckConstraint(
                condition=Q(score__gte=1) & Q(score__lte=5), name="feedback_score_1_5"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.score}/5 on {self.conversation}"
