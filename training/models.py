"""Training runs on dataset snapshots, their per-step metrics, and adapter deployments."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


class TrainingRun(models.Model):
    """One training job on a frozen snapshot: a LoRA adapter (reward model, PPO, GRPO,
    RLOO, KTO, DPO or the retriever adapter), or a new intent-router version (trained
    from the shipped data plus the rows agents labelled when the run starts).

    Status moves queued -> running -> succeeded | failed | cancelled, only through
    ``training.services.runs``.
    """

    class Algorithm(models.TextChoices):
        REWARD_MODEL = "reward_model", "Reward model (preference pairs)"
        PPO = "ppo", "PPO against a reward model (TRL experimental, up to TRL 1.12)"
        GRPO = "grpo", "GRPO against a reward model or the judge"
        RLOO = "rloo", "RLOO against a reward model or the judge"
        KTO = "kto", "KTO (desirable / undesirable ratings)"
        DPO = "dpo", "DPO (preference pairs)"
        RETRIEVER = "retriever", "Retriever adapter (LoRA on MiniLM's question side)"
        INTENT_ROUTER = "intent_router", "Intent router (retrained from agents' outcomes)"

    class RewardSource(models.TextChoices):
        REWARD_MODEL = "reward_model", "The reward model of a reward_model run"
        JUDGE = "judge", "The AI judge (once it passes its calibration gate)"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Device(models.TextChoices):
        AUTO = "auto", "CUDA when present, else CPU"
        CPU = "cpu", "CPU"
        CUDA = "cuda", "CUDA"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
    # Runs whose adapter changes what the assistant retrieves, not what it writes.
    RETRIEVAL = (Algorithm.RETRIEVER,)
    # Runs that sample new answers and are rewarded for them; each is guarded (KL, length).
    ONLINE = (Algorithm.PPO, Algorithm.GRPO, Algorithm.RLOO)

    name = models.CharField(max_length=100, blank=True)
    snapshot = models.ForeignKey(
        "labeling.DatasetSnapshot", on_delete=models.PROTECT, related_name="training_runs"
    )
    algorithm = models.CharField(max_length=16, choices=Algorithm.choices)
    preset = models.CharField(max_length=40, blank=True)
    base_model = models.CharField(
        max_length=500,
        help_text="A local folder (absolute path) or an s3:// URI; never a model hub id.",
    )
    reward_run = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=(
            "Online runs (PPO, GRPO, RLOO) rewarded by a reward model: the succeeded "
            "reward_model run that scores the answers."
        ),
    )
    reward_source = models.CharField(
        max_length=16,
        choices=RewardSource.choices,
        default=RewardSource.REWARD_MODEL,
        help_text="Online runs: what scores the sampled answers. PPO takes a reward model only.",
    )
    lora_r = models.PositiveIntegerField(default=8)
    lora_alpha = models.PositiveIntegerField(default=16)
    lora_dropout = models.FloatField(default=0.0)
    lora_target_modules = models.JSONField(
        default=list,
        blank=True,
        help_text='Module names, e.g. ["q_proj", "v_proj"]; empty: all linear.',
    )
    hyperparameters = models.JSONField(default=dict, blank=True)
    seed = models.PositiveIntegerField(default=0)
    device = models.CharField(max_length=8, choices=Device.choices, default=Device.AUTO)

    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    child_pid = models.PositiveIntegerField(null=True, blank=True)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    log_tail = models.TextField(blank=True)

    # Artifacts in default_storage under ``artifact_prefix`` with a manifest.
    artifact_prefix = models.CharField(max_length=300, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    evaluation = models.JSONField(default=dict, blank=True)

    router_version = models.ForeignKey(
        "chat.RouterVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Intent-router runs: the version the run trained (live once deployed).",
    )

    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("approve_trainingrun", "Can approve a training run's adapter"),
            ("deploy_adapter", "Can deploy and roll back adapters"),
            (
                "force_deploy_adapter",
                "Can deploy an adapter whose evaluation is not better than the live one",
            ),
        ]

    def __str__(self) -> str:
        return self.name or f"run {self.pk} ({self.algorithm})"

    @property
    def adapter_name(self) -> str:
        return f"run-{self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def produces_adapter(self) -> bool:
        return self.algorithm != self.Algorithm.REWARD_MODEL

    @property
    def adapter_kind(self) -> str:
        """Which part of the assistant the run's result changes (an ``AdapterDeployment``
        kind): the retriever, the intent router or the generator."""
        if self.algorithm == self.Algorithm.INTENT_ROUTER:
            return "router"
        return "retriever" if self.algorithm in self.RETRIEVAL else "generator"

    @property
    def is_online(self) -> bool:
        return self.algorithm in self.ONLINE

    def clean(self) -> None:
        errors: dict[str, str] = {}
        base = self.base_model.strip()
        if not (base.startswith("s3://") or base.startswith("/")):
            errors["base_model"] = (
                f"{base!r} is neither an absolute local folder nor an s3:// URI; "
                "model hub ids are never downloaded"
            )
        by_reward_model = self.reward_source == self.RewardSource.REWARD_MODEL
        if self.is_online and by_reward_model and self.reward_run_id is None:
            errors["reward_run"] = (
                f"{self.get_algorithm_display().split(' ')[0]} needs a reward model: "
                "pick a reward_model run (or, for GRPO/RLOO, the judge as reward source)."
            )
        if self.algorithm == self.Algorithm.PPO and not by_reward_model:
            errors["reward_source"] = (
                "PPO scores answers with a reward model only; use GRPO or RLOO for the judge."
            )
        if (
            self.reward_run_id is not None
            and self.reward_run is not None
            and self.reward_run.algorithm != self.Algorithm.REWARD_MODEL
        ):
            errors["reward_run"] = "The reward run must be a reward_model run."
        if not 0.0 <= self.lora_dropout < 1.0:
            errors["lora_dropout"] = "Dropout must be in [0, 1)."
        if self.lora_r < 1:
            errors["lora_r"] = "LoRA rank must be at least 1."
        if not isinstance(self.hyperparameters, dict):
            errors["hyperparameters"] = "Hyperparameters must be a JSON object."
        else:
            problem = _guard_overrides_problem(self.hyperparameters)
            if problem:
                errors["hyperparameters"] = problem
        if not isinstance(self.lora_target_modules, list):
            errors["lora_target_modules"] = "Target modules must be a JSON list."
        if errors:
            raise ValidationError(errors)


def _guard_overrides_problem(hyperparameters: dict) -> str:
    """The guards' per-run overrides (training.services.guards) must be numbers or null."""
    for key in ("guard_max_kl", "guard_max_length_drift"):
        value = hyperparameters.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value < 0
        ):
            return f"{key} must be a number of at least 0, or null to switch the guard off."
    warmup = hyperparameters.get("guard_warmup_steps")
    if warmup is not None and (
        isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1
    ):
        return "guard_warmup_steps must be a whole number of at least 1."
    return ""


class RunMetric(models.Model):
    """One logged value of a run at a step (PPO objective/scores, objective/kl, losses...)."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="metrics")
    step = models.PositiveIntegerField()
    name = models.CharField(max_length=80)
    value = models.FloatField()
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "step", "name"]
        indexes = [models.Index(fields=["run", "name", "step"])]

    def __str__(self) -> str:
        return f"{self.run_id} {self.name}@{self.step}={self.value:.4g}"


class AdapterDeployment(models.Model):
    """An approved run's adapter made live for a slot (one generator and one retriever
    adapter per slot), or an intent-router run's version made live (``router``: the
    default slot only; the router is one for the organisation).

    ``slot`` "" is the organisation's default; any other value is a tenant or
    conversation choice matched against ``Conversation.adapter_name``. At most one
    deployment per slot is active; the previous one stays for one-click rollback.
    """

    class Kind(models.TextChoices):
        GENERATOR = "generator", "Generator (the hf provider's answers)"
        RETRIEVER = "retriever", "Retriever (the questions' MiniLM encoder)"
        ROUTER = "router", "Intent router (every customer turn's route)"

    slot = models.CharField(max_length=100, blank=True, default="")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.GENERATOR)
    run = models.ForeignKey(TrainingRun, on_delete=models.PROTECT, related_name="deployments")
    active = models.BooleanField(default=True)
    previous = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    deployed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    deployed_at = models.DateTimeField(auto_now_add=True)
    rolled_back_at = models.DateTimeField(null=True, blank=True)
    gate_summary = models.TextField(
        blank=True, help_text="The deployment gate's comparison when this was deployed."
    )
    forced_reason = models.TextField(
        blank=True,
        help_text="Why an admin deployed it although the gate found it not better.",
    )
    router_version = models.ForeignKey(
        "chat.RouterVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Router deployments: the version made live.",
    )
    replaced_router_version = models.ForeignKey(
        "chat.RouterVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Router deployments: the version that routed before; a rollback restores it.",
    )

    class Meta:
        ordering = ["-deployed_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "slot"],
                condition=models.Q(active=True),
                name="one_active_adapter_per_kind_and_slot",
            )
        ]

    def __str__(self) -> str:
        return f"{self.run.adapter_name} -> {self.slot or 'default'}"

    @property
    def forced(self) -> bool:
        return bool(self.forced_reason)
