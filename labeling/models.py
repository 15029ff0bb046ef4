"""Labels on the assistant's answers and the dataset snapshots frozen from them."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

# Members of this group are assigned items to label (``config.roles`` creates it).
REVIEWERS_GROUP = "reviewers"


class DatasetSnapshot(models.Model):
    """An immutable, versioned training set frozen from labels.

    Rows never change after the snapshot is created (see ``labeling.services``); training
    runs read them through ``labeling.selectors.snapshot_rows``.
    """

    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField()
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The filter that selected the labels, kept for provenance.
    filters = models.JSONField(default=dict, blank=True)
    redacted = models.BooleanField(default=False)
    # {"scored": n, "pair": n, "kto": n}
    row_counts = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="snapshot_unique_version")
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class SnapshotRow(models.Model):
    class Kind(models.TextChoices):
        SCORED = "scored", "Prompt / response / score"
        PAIR = "pair", "Preference pair (prompt, chosen, rejected)"
        KTO = "kto", "Desirable / undesirable (prompt, completion, label)"

    snapshot = models.ForeignKey(DatasetSnapshot, on_delete=models.CASCADE, related_name="rows")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    position = models.PositiveIntegerField()
    # scored: {prompt, response, score}; pair: {prompt, chosen, rejected};
    # kto: {prompt, completion, label: bool}. Every kind may add {"split": "train"|"test"}.
    data = models.JSONField()

    class Meta:
        ordering = ["snapshot", "kind", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["snapshot", "kind", "position"], name="snapshot_row_unique_position"
            )
        ]

    def __str__(self) -> str:
        return f"{self.snapshot} {self.kind} #{self.position}"


class SamplingPolicy(models.Model):
    """Which assistant answers go to reviewers (the blog: "randomly sample ... or use a
    pattern"). Configured in the admin; run on a schedule and on demand."""

    name = models.CharField(max_length=100, unique=True)
    is_active = models.BooleanField(default=True)
    # Share of all other answers picked at random (0-1); stable per answer, so re-runs
    # never widen the sample.
    random_share = models.FloatField(
        default=0.1, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    include_escalated = models.BooleanField(
        default=True, help_text="Every answer in a conversation a person took over."
    )
    include_negative = models.BooleanField(
        default=True, help_text="Every answer to a customer message with negative sentiment."
    )
    # Every answer in a conversation the customer rated at or below this (blank = off).
    low_rating_max = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        default=2,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text="Sample every answer of conversations rated at or below this score.",
    )
    daily_cap = models.PositiveIntegerField(
        default=200, help_text="At most this many new items per day from this policy."
    )
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "sampling policies"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class LabelingBatch(models.Model):
    """Items sampled together (one policy run, one import, the demo); agreement is
    reported per batch."""

    name = models.CharField(max_length=120)
    policy = models.ForeignKey(
        SamplingPolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="batches"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Krippendorff's alpha (ordinal) over the batch's consolidated items.
    agreement_alpha = models.FloatField(null=True, blank=True)
    agreement_items = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "labeling batches"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class LabelingItem(models.Model):
    """One assistant answer to be labeled, with what the reviewer needs to judge it."""

    class Reason(models.TextChoices):
        RANDOM = "random", "Random sample"
        ESCALATED = "escalated", "Escalated conversation"
        NEGATIVE = "negative", "Negative sentiment"
        LOW_RATING = "low_rating", "Low customer rating"
        MANUAL = "manual", "Added by hand"
        IMPORT = "import", "Ground Truth import"

    class Status(models.TextChoices):
        LABELING = "labeling", "Waiting for labels"
        CONSOLIDATED = "consolidated", "Consolidated"
        ADJUDICATION = "adjudication", "Needs adjudication"

    class JudgeReview(models.TextChoices):
        UNREVIEWED = "unreviewed", "Not reviewed"
        ACCEPTED = "accepted", "Accepted"
        OVERRIDDEN = "overridden", "Overridden"

    # Never sample the same answer twice: one item per message.
    message = models.OneToOneField(
        "chat.Message",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="labeling_item",
    )
    conversation = models.ForeignKey(
        "chat.Conversation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="labeling_items",
    )
    batch = models.ForeignKey(
        LabelingBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="items"
    )
    reason = models.CharField(max_length=12, choices=Reason.choices, default=Reason.RANDOM)
    question = models.TextField()
    answer = models.TextField()
    # Retrieved passages shown with the answer: [{slug, title, score}, ...].
    context = models.JSONField(default=list, blank=True)
    provider = models.CharField(max_length=20, blank=True)
    model_name = models.CharField(max_length=200, blank=True)
    adapter = models.CharField(max_length=100, blank=True)
    # A known-good answer (e.g. the customer's better answer), used by the judge.
    reference_answer = models.TextField(blank=True)
    # sha256 of the Ground Truth "source" (question,answer): how manifests find items.
    source_hash = models.CharField(max_length=64, db_index=True, editable=False)
    status = models.CharField(max_length=14, choices=Status.choices, default=Status.LABELING)
    reviewers_required = models.PositiveSmallIntegerField(default=3)
    # Consolidation of the reviewers' relevance scores.
    median_score = models.FloatField(null=True, blank=True)
    score_spread = models.PositiveSmallIntegerField(null=True, blank=True)
    consolidated_at = models.DateTimeField(null=True, blank=True)
    adjudicated_score = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    adjudicated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # AI feedback (RLAIF) and its validation by experts.
    judge_score = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    judge_comment = models.TextField(blank=True)
    judge_method = models.CharField(max_length=40, blank=True)
    judged_at = models.DateTimeField(null=True, blank=True)
    judge_review = models.CharField(
        max_length=10, choices=JudgeReview.choices, default=JudgeReview.UNREVIEWED
    )
    judge_validated_score = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    judge_validated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "-created_at"]),
            models.Index(fields=["judge_review", "judge_score"]),
        ]
        permissions = [
            ("see_all_labels", "Can see every reviewer's labels and the consolidation"),
            ("validate_judge", "Can accept or override AI judge scores"),
            ("run_sampling", "Can run sampling policies"),
        ]

    def __str__(self) -> str:
        return f"Item {self.pk}: {self.question[:50]}"

    @property
    def final_score(self) -> float | None:
        """The human score training uses: the adjudicated one, else the median."""
        if self.adjudicated_score is not None:
            return float(self.adjudicated_score)
        return self.median_score


class Label(models.Model):
    """One reviewer's assignment on an item and, once submitted, their label.

    Imported Ground Truth labels have no reviewer, only the workforce's ``worker_id``.
    """

    class Status(models.TextChoices):
        ASSIGNED = "assigned", "Assigned"
        SUBMITTED = "submitted", "Submitted"

    class Source(models.TextChoices):
        CONSOLE = "console", "Reviewer console"
        API = "api", "API (external workforce)"
        GROUND_TRUTH = "ground_truth", "Ground Truth import"

    item = models.ForeignKey(LabelingItem, on_delete=models.CASCADE, related_name="labels")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="labels",
    )
    worker_id = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ASSIGNED)
    source = models.CharField(max_length=14, choices=Source.choices, default=Source.CONSOLE)
    # "How relevant is the below answer to the question": 1-5, 5 the most relevant.
    score = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    better_answer = models.TextField(blank=True)
    comment = models.TextField(blank=True)
    assigned_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["assigned_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["item", "reviewer"],
                condition=Q(reviewer__isnull=False),
                name="label_one_per_reviewer",
            ),
            models.UniqueConstraint(
                fields=["item", "worker_id"],
                condition=~Q(worker_id=""),
                name="label_one_per_worker",
            ),
            models.CheckConstraint(
                condition=Q(score__isnull=True) | (Q(score__gte=1) & Q(score__lte=5)),
                name="label_score_1_5",
            ),
            models.CheckConstraint(
                condition=Q(status="assigned") | Q(score__isnull=False),
                name="label_submitted_has_score",
            ),
        ]
        indexes = [models.Index(fields=["reviewer", "status", "assigned_at"])]

    def __str__(self) -> str:
        who = self.worker_id or (self.reviewer.get_username() if self.reviewer else "?")
        return f"Label on item {self.item_id} by {who}"


class LabelingItemJudgeView(LabelingItem):
    """AI scores as experts validate them (a second admin over the same rows)."""

    class Meta:
        proxy = True
        verbose_name = "AI score to validate"
        verbose_name_plural = "AI scores to validate"


class AdjudicationItem(LabelingItem):
    """Items whose reviewers disagreed too much (the adjudication list)."""

    class Meta:
        proxy = True
        verbose_name = "item to adjudicate"
        verbose_name_plural = "adjudication list"
