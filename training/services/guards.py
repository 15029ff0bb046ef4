"""Guards for online runs (PPO, GRPO, RLOO): stop a run whose policy drifts too far.

An online run samples new answers and is rewarded for them; with a high learning rate
it learns to game the reward (the KL from the starting model climbs, the answers get
very short or very long) while the reward still rises. The guard reads every logged step
and stops training at the first step past a limit; the run then fails with a plain reason
("stopped: KL 6.2 exceeded the limit 4.0 at step 40") that the run page shows.

Two measures, one scale for every trainer:

- **KL per answer**: the KL divergence of an answer from the starting model, summed over
  its tokens. PPO logs it (``objective/kl``); GRPO and RLOO log the mean per token
  (``kl``, only when ``beta`` > 0), so it is multiplied by the mean answer length.
- **Answer length drift**: how far the mean answer length (tokens, EOS included) moved
  from its mean over the first ``warmup_steps`` logged steps, as a share of it. GRPO and
  RLOO log the length (``completions/mean_length``); for PPO, which does not,
  ``AnswerLengths`` records it from the policy's generations.

Both are added to the step's logs (``guard/answer_kl``, ``guard/mean_length``) so they are
stored and charted like the trainer's own metrics. Runs in the training child: no Django.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from statistics import mean
from typing import Any

GUARD_KL = "guard/answer_kl"
GUARD_LENGTH = "guard/mean_length"
KL_PER_ANSWER = "objective/kl"  # PPO: summed over the answer's tokens
KL_PER_TOKEN = "kl"  # noqa: S105 - GRPO / RLOO: mean KL per token (a metric name)
MEAN_LENGTH = "completions/mean_length"  # GRPO / RLOO

# Per-run overrides, read from the run's hyperparameters (null switches a guard off).
HYPERPARAMETER_KEYS = {
    "max_kl": "guard_max_kl",
    "max_length_drift": "guard_max_length_drift",
    "warmup_steps": "guard_warmup_steps",
}


class GuardTripped(Exception):
    """A guard stopped the run; the message is the run's failure reason."""


@dataclass(frozen=True)
class GuardLimits:
    """``None`` switches a guard off."""

    max_kl: float | None
    max_length_drift: float | None
    warmup_steps: int = 3

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuardLimits:
        return cls(
            max_kl=_optional_float(data.get("max_kl")),
            max_length_drift=_optional_float(data.get("max_length_drift")),
            warmup_steps=max(1, int(data.get("warmup_steps") or 1)),
        )

    def describe(self) -> str:
        kl = f"KL per answer at most {_number(self.max_kl)}" if self.max_kl is not None else ""
        length = (
            f"mean answer length within {self.max_length_drift:.0%} of its first "
            f"{self.warmup_steps} steps"
            if self.max_length_drift is not None
            else ""
        )
        parts = [part for part in (kl, length) if part]
        return "; ".join(parts) if parts else "off"


def guard_limits_resolve(*, defaults: GuardLimits, hyperparameters: dict[str, Any]) -> GuardLimits:
    """The defaults (settings) with the run's ``guard_*`` hyperparameters applied."""
    values = defaults.as_dict()
    for field, key in HYPERPARAMETER_KEYS.items():
        if key in hyperparameters:
            values[field] = hyperparameters[key]
    return GuardLimits.from_dict(values)


def _optional_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    return float(value)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if abs(value) >= 1 else f"{value:.2g}"


class AnswerLengths:
    """Mean answer length of a policy's generations, for trainers that do not log it.

    ``wrap(model)`` replaces the model's ``generate`` with one that records, per call, the
    mean number of new tokens up to and including the first EOS. ``take()`` returns the
    mean since the last call (None when nothing was generated).
    """

    def __init__(self, *, eos_token_id: int | None) -> None:
        self.eos_token_id = eos_token_id
        self._values: list[float] = []

    def wrap(self, model: Any) -> None:
        generate = model.generate

        def recording_generate(*args: Any, **kwargs: Any) -> Any:
            output = generate(*args, **kwargs)
            prompt = kwargs.get("input_ids", args[0] if args else None)
            sequences = getattr(output, "sequences", output)
            if prompt is not None and hasattr(sequences, "shape"):
                self._record(sequences[:, prompt.shape[1] :])
            return output

        model.generate = recording_generate

    def _record(self, answers: Any) -> None:
        width = int(answers.shape[1])
        if not width or not len(answers):
            return
        lengths = []
        for row in answers.tolist():
            if self.eos_token_id is not None and self.eos_token_id in row:
                lengths.append(row.index(self.eos_token_id) + 1)
            else:
                lengths.append(width)
        self._values.append(mean(lengths))

    def take(self) -> float | None:
        if not self._values:
            return None
        value = mean(self._values)
        self._values = []
        return value


class OnlineRunGuard:
    """The limits checked against one run's logged steps (see the module docstring)."""

    def __init__(self, limits: GuardLimits, *, lengths: AnswerLengths | None = None) -> None:
        self.limits = limits
        self.lengths = lengths
        self.baseline: list[float] = []
        self.reason: str | None = None

    def observe(self, *, step: int, logs: dict[str, Any]) -> str | None:
        """Add the guard's measures to ``logs``; returns the stop reason, if any."""
        length = logs.get(MEAN_LENGTH)
        if length is None and self.lengths is not None:
            length = self.lengths.take()
        kl = logs.get(KL_PER_ANSWER)
        if kl is None and logs.get(KL_PER_TOKEN) is not None and length is not None:
            kl = float(logs[KL_PER_TOKEN]) * float(length)
        if length is not None:
            logs[GUARD_LENGTH] = float(length)
        if kl is not None:
            logs[GUARD_KL] = float(kl)
        if self.reason is not None:
            return self.reason
        limit = self.limits.max_kl
        if limit is not None and kl is not None and kl > limit:
            self.reason = (
                f"stopped: KL {_number(kl)} exceeded the limit {_number(limit)} at step {step}"
            )
            return self.reason
        if length is None:
            return None
        if len(self.baseline) < self.limits.warmup_steps:
            self.baseline.append(float(length))
            return None
        drift_limit = self.limits.max_length_drift
        start = mean(self.baseline)
        if drift_limit is None or start <= 0:
            return None
        drift = abs(float(length) - start) / start
        if drift > drift_limit:
            self.reason = (
                f"stopped: mean answer length {float(length):.1f} tokens drifted {drift:.0%} "
                f"from {start:.1f} (limit {drift_limit:.0%}) at step {step}"
            )
        return self.reason


def guard_callback(
    *,
    limits: GuardLimits,
    emit: Callable[[dict[str, Any]], None],
    lengths: AnswerLengths | None = None,
) -> Any:
    """A transformers ``TrainerCallback`` that applies ``limits`` to every logged step.

    Put it before the callback that reports metrics: it adds its measures to the logs.
    At a trip it asks the trainer to stop (``control.should_training_stop``, which the
    transformers Trainer loop honours right after the log) and raises ``GuardTripped``
    at the next step end (PPO's own loop ignores ``should_training_stop``). Call
    ``raise_if_tripped()`` after ``train()`` returns.
    """
    from transformers import TrainerCallback

    class OnlineRunGuardCallback(TrainerCallback):
        def __init__(self) -> None:
            self.guard = OnlineRunGuard(limits, lengths=lengths)

        @property
        def reason(self) -> str | None:
            return self.guard.reason

        def on_train_begin(self, args, state, control, **kwargs):
            emit({"event": "log", "line": f"guards: {limits.describe()}"})

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is None or self.guard.reason is not None:
                return
            reason = self.guard.observe(step=int(state.global_step), logs=logs)
            if reason is not None:
                emit({"event": "log", "line": reason})
                control.should_training_stop = True

        def on_step_end(self, args, state, control, **kwargs):
            self.raise_if_tripped()

        def raise_if_tripped(self) -> None:
            if self.guard.reason is not None:
                raise GuardTripped(self.guard.reason)

    return OnlineRunGuardCallback()
