"""Conversations between customers, the assistant and agents, and the knowledge base."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

SOURCE_KEYS = {"slug", "title", "score", "passage", "anchor", "kind", "excerpt"}


def sources_validate(value: Any) -> None:
    """Citations are a list of {slug, title, score[, passage, anchor, kind]}."""
    if not isinstance(value, list):
        raise ValidationError("Sources are a list.")
    for item in value:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("slug"), str)
            or not isinstance(item.get("title"), str)
            or not isinstance(item.get("score"), int | float)
        ):
            raise ValidationError("Each source has a slug, a title and a score.")
        if set(item) - SOURCE_KEYS:
            raise ValidationError(f"Unknown source keys: {sorted(set(item) - SOURCE_KEYS)}")


def scores_validate(value: Any) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) for k, v in value.items()
    ):
        raise ValidationError("Scores are a mapping of class name to a number.")


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
        permissions = [
            ("handle_conversation", "Can join customers' conversations as support staff")
        ]

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

    class Marker(models.TextChoices):
        """What a system message marks in the conversation (read by the history)."""

        NONE = "", "None"
        HUMAN_START = "human_start", "A person joined"
        HUMAN_END = "human_end", "Handed back to the assistant"
        ESCALATED = "escalated", "Escalated to a person"
        HUMAN_REQUESTED = "human_requested", "The customer asked for a person"
        TURN_NOTICE = "turn_notice", "Notice from the assistant's turn"
        TURN_FAILED = "turn_failed", "The assistant's turn failed"
        ENDED = "ended", "Conversation ended"

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
    # Knowledge-base passages cited under an assistant answer (validated: see Turn).
    sources = models.JSONField(default=list, blank=True, validators=[sources_validate])
    marker = models.CharField(max_length=20, choices=Marker.choices, blank=True, default="")
    # The assistant turn this answer, draft or notice came from (its signals and decision
    # are on the Turn; customers never see them).
    turn = models.ForeignKey(
        "Turn", null=True, blank=True, on_delete=models.SET_NULL, related_name="outputs"
    )
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


class Turn(models.Model):
    """One customer message and what the assistant did about it: the typed record of a
    turn, written only by the turn pipeline (``chat.turns`` through
    ``chat.services.turns``) and read by the agent console, labeling and the API through
    selectors.

    A turn is claimed in the database before it runs: at most one turn of a conversation
    is ``running`` (a unique constraint), so two server processes never answer the same
    conversation at once; pending turns run in message order. ``deadline_at`` is when the
    owner gives up on its own; a running turn past it (plus a grace period) belongs to a
    process that died, and the sweep finishes it.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to run"
        RUNNING = "running", "Running"
        ANSWERED = "answered", "Answered"
        WITHHELD = "withheld", "Answer withheld (a person took over)"
        ESCALATED = "escalated", "Escalated to a person"
        BLOCKED = "blocked", "Blocked"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Not run (a person handles the conversation)"

    FINISHED = (
        Status.ANSWERED,
        Status.WITHHELD,
        Status.ESCALATED,
        Status.BLOCKED,
        Status.FAILED,
        Status.SKIPPED,
    )

    class Route(models.TextChoices):
        """Where the turn was routed (conversational routing)."""

        UNDECIDED = "", "Not decided"
        ANSWER = "answer", "Answer from the knowledge base"
        SMALL_TALK = "small_talk", "Small talk"
        OUT_OF_SCOPE = "out_of_scope", "Out of scope"
        ESCALATE = "escalate", "Escalate to a person"
        BLOCK = "block", "Block"

    class AnswerBand(models.TextChoices):
        """How sure retrieval was that the knowledge base answers
        (``chat.assistant.contract.BANDS``)."""

        UNKNOWN = "", "Not retrieved"
        CONFIDENT = "confident", "Confident answer"
        HEDGED = "hedged", "Hedged: closest article cited, a person offered"
        DONT_KNOW = "dont_know", "\u201cI don't know\u201d, a person offered"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    customer_message = models.OneToOneField(
        Message, on_delete=models.CASCADE, related_name="customer_turn"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    route = models.CharField(max_length=12, choices=Route.choices, blank=True, default="")
    # host:pid:boot of the process running it.
    owner = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # Signals, all computed before any draft is shown.
    sentiment_label = models.CharField(max_length=10, blank=True)
    sentiment_score = models.FloatField(null=True, blank=True)
    sentiment_method = models.CharField(max_length=20, blank=True)
    intent = models.CharField(max_length=30, blank=True)
    intent_confidence = models.FloatField(null=True, blank=True)
    intent_scores = models.JSONField(default=dict, blank=True, validators=[scores_validate])
    router_version = models.CharField(max_length=80, blank=True)
    retrieval_top_score = models.FloatField(null=True, blank=True)
    retrieval_min_score = models.FloatField(null=True, blank=True)
    no_answer = models.BooleanField(default=False)
    answer_band = models.CharField(
        max_length=10, choices=AnswerBand.choices, blank=True, default=AnswerBand.UNKNOWN
    )
    sources = models.JSONField(default=list, blank=True, validators=[sources_validate])

    # The decision (by the registered reviewer) in plain words for agents.
    decision_reason = models.CharField(max_length=40, blank=True)
    decision_category = models.CharField(max_length=40, blank=True)
    decision_detail = models.CharField(max_length=300, blank=True)
    decision_priority = models.CharField(max_length=8, blank=True)
    withheld_reason = models.CharField(max_length=100, blank=True)

    provider = models.CharField(max_length=20, blank=True)
    model_name = models.CharField(max_length=200, blank=True)
    adapter = models.CharField(max_length=100, blank=True)
    retriever_adapter = models.CharField(max_length=100, blank=True)
    # The approved answer from the support team that answered this turn (answer memory),
    # if one matched the question.
    support_answer = models.ForeignKey(
        "SupportAnswer", null=True, blank=True, on_delete=models.SET_NULL, related_name="turns"
    )
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["conversation", "customer_message_id"]
        indexes = [
            models.Index(fields=["conversation", "status"]),
            models.Index(fields=["status", "deadline_at"]),
            models.Index(fields=["sentiment_label"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation"],
                condition=Q(status="running"),
                name="turn_one_running_per_conversation",
            ),
        ]

    def __str__(self) -> str:
        return f"Turn {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class Article(models.Model):
    """A knowledge-base article the assistant retrieves from and cites."""

    class Source(models.TextChoices):
        MANUAL = "manual", "Written by the team"
        EXPERT = "expert", "From an expert conversation"

    slug = models.SlugField(max_length=120, unique=True)
    title = models.CharField(max_length=200)
    category = models.CharField(max_length=80, blank=True)
    body = models.TextField()
    # Words customers use that the article does not (one label or short phrase a line,
    # e.g. "thermostat" for the Hub): searched and embedded with the article, never shown.
    search_labels = models.TextField(
        blank=True,
        help_text=(
            "Other words customers use for this article's subject, one per line "
            "(e.g. \u201cthermostat\u201d, \u201ctariff\u201d). Used by search only."
        ),
    )
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


class ArticlePassage(models.Model):
    """A passage of an article (a section, a numbered step or a few sentences), with its
    embedding: what the assistant retrieves and cites, and what the help page anchors.

    Written only by the background embedding (``chat.services.articles_embed``), which
    replaces an article's passages whenever it re-embeds the article."""

    class Kind(models.TextChoices):
        SECTION = "section", "Section"
        STEP = "step", "Numbered step"
        PROSE = "prose", "Paragraph"

    article = models.ForeignKey(Article, on_delete=models.CASCADE, related_name="passages")
    position = models.PositiveSmallIntegerField()
    anchor = models.SlugField(max_length=80)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    heading = models.CharField(max_length=200, blank=True)
    text = models.TextField()
    # Unit sentence vector of "title: heading\n\ntext", and its token vectors (float16
    # rows, unit length) for late-interaction scoring; empty for encoders without them.
    embedding = models.JSONField()
    token_vectors = models.BinaryField(blank=True, default=b"")
    # The local answer model's vectors of the passage's sentences (float16 rows, one per
    # sentence of ``chat.assistant.local_model.sentences(text)``), computed here once so
    # that no server process encodes passages at start or in a customer's turn; empty
    # for providers that do not quote sentences.
    sentence_vectors = models.BinaryField(blank=True, default=b"")
    embedding_model = models.CharField(max_length=120)

    class Meta:
        ordering = ["article", "position"]
        constraints = [
            models.UniqueConstraint(fields=["article", "anchor"], name="passage_anchor_unique"),
            models.UniqueConstraint(fields=["article", "position"], name="passage_position_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.article_id}#{self.anchor}"


class SupportAnswer(models.Model):
    """An answer the support team approved for reuse (answer memory): a reviewer's better
    answer or an agent's reply, with the question it answered and who wrote and approved
    it. A later customer asking the same thing (MiniLM cosine of the questions at or above
    ``ANSWER_MEMORY_MIN_SIMILARITY``) gets it, cited "From our support team".

    Only approved, not revoked rows are ever matched (``chat.selectors.
    support_answers_matchable``); every write goes through ``chat.services.support_answers``.
    The origin outside chat (a label, a ticket) is named by ``origin`` and ``origin_ref``:
    chat imports no other app.
    """

    class Origin(models.TextChoices):
        REVIEWER = "reviewer", "A reviewer's better answer"
        AGENT = "agent", "An agent's reply"

    class Status(models.TextChoices):
        APPROVED = "approved", "Approved: answers customers"
        REVOKED = "revoked", "Revoked: never used"

    question = models.TextField()
    answer = models.TextField()
    # The help article the answer concerns (cited after the answer), if any.
    article = models.ForeignKey(
        Article, null=True, blank=True, on_delete=models.SET_NULL, related_name="support_answers"
    )
    origin = models.CharField(max_length=10, choices=Origin.choices)
    origin_ref = models.CharField(
        max_length=100,
        help_text="Where it came from, e.g. labeling.Label:42 or escalation.Ticket:7",
    )
    # The chat message the answer corrects (a reviewer's) or is (an agent's reply).
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    written_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.APPROVED)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_at = models.DateTimeField()
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Unit vectors of the question and of the answer by the retrieval encoder (MiniLM),
    # stored at approval.
    embedding = models.JSONField(null=True, blank=True, editable=False)
    answer_embedding = models.JSONField(null=True, blank=True, editable=False)
    embedding_model = models.CharField(max_length=120, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-approved_at"]
        indexes = [models.Index(fields=["status", "embedding_model"])]
        constraints = [
            models.UniqueConstraint(
                fields=["origin_ref"],
                condition=Q(status="approved"),
                name="support_answer_one_approved_per_origin",
            ),
        ]
        permissions = [("approve_supportanswer", "Can approve and revoke answers from the team")]

    def __str__(self) -> str:
        return f"{self.question[:60]} ({self.get_status_display()})"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.APPROVED


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


INTENT_LABELS = [
    ("answer", "Answer from the knowledge base"),
    ("small_talk", "Small talk"),
    ("out_of_scope", "Out of scope"),
    ("human_request", "The customer asks for a person"),
    ("anger", "Anger or insult"),
    ("sarcasm", "Sarcasm"),
    ("frustration", "Frustration with the assistant or repeated contact"),
    ("safety", "Safety hazard"),
    ("medical", "Medical emergency"),
    ("security", "Security or fraud"),
    ("vulnerable", "Vulnerable customer"),
    ("legal", "Legal or regulatory threat"),
    ("press", "Press or public exposure"),
    ("billing_dispute", "Billing dispute or overcharge"),
    ("churn", "Churn threat"),
]


class IntentExample(models.Model):
    """A customer message labelled by the people who handled it: a training row for
    the intent router (``manage.py intents_train`` adds these to the shipped data).

    Written only through ``chat.services.intent_example_record`` (the escalation app
    calls it when an agent resolves or flags a conversation; a later training-run kind
    can too). One row per message and source: a second verdict replaces the first.
    """

    class Source(models.TextChoices):
        AGENT_RESOLVE = "agent_resolve", "An agent resolved the ticket"
        AGENT_FLAG = "agent_flag", "An agent flagged a conversation the assistant kept"
        REVIEW = "review", "A reviewer labelled it"

    text = models.TextField()
    label = models.CharField(max_length=30, choices=INTENT_LABELS)
    source = models.CharField(max_length=20, choices=Source.choices)
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="intent_examples"
    )
    conversation = models.ForeignKey(
        Conversation,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="intent_examples",
    )
    # What the router had said about the message (its class and version), for comparison.
    router_label = models.CharField(max_length=30, blank=True)
    router_version = models.CharField(max_length=80, blank=True)
    note = models.CharField(max_length=300, blank=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="intent_examples",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["message", "source"],
                condition=Q(message__isnull=False),
                name="intent_example_once_per_message_and_source",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label}: {self.text[:40]}"


class RouterVersion(models.Model):
    """A trained version of the intent router and its figures on the shipped
    evaluation part. At most one is live; every turn records the version that routed it
    (``Turn.router_version``). Made live only through
    ``chat.services.router_version_make_live``, which refuses a version that evaluates
    worse than the live one on escalate-or-not precision or recall."""

    class Source(models.TextChoices):
        SHIPPED = "shipped", "Ships with the code"
        TRAINED = "trained", "Trained here"

    name = models.CharField(max_length=80, unique=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.TRAINED)
    # Storage prefix of a trained version's files ("" for the shipped one).
    artifact_prefix = models.CharField(max_length=200, blank=True)
    is_live = models.BooleanField(default=False)
    eval_precision = models.FloatField(
        help_text="Escalate-or-not precision on the evaluation part."
    )
    eval_recall = models.FloatField(help_text="Escalate-or-not recall on the evaluation part.")
    eval_accuracy = models.FloatField(help_text="Share of messages given their exact class.")
    eval_fingerprint = models.CharField(max_length=64)
    eval_critical_missed = models.PositiveIntegerField(default=0)
    # Per-class precision/recall and the confusion between classes (written by
    # ``chat.services.intents``, read by the admin and the eval command only).
    eval_report = models.JSONField(default=dict, blank=True)
    train_rows = models.PositiveIntegerField(default=0)
    agent_rows = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    made_live_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    made_live_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_live"], condition=Q(is_live=True), name="router_version_one_live"
            ),
        ]
        permissions = [("make_live_routerversion", "Can make an intent router version live")]

    def __str__(self) -> str:
        return self.name + (" (live)" if self.is_live else "")
