"""The deployment gate: an adapter goes live only when its evaluation beats what is live.

A run's evaluation (``TrainingRun.evaluation``) holds figures measured on held-out
questions with its adapter and without it. What the figures are depends on the kind of
adapter: a generative adapter is judged on the answers it writes (judge mean score and
share of answers above 3); other kinds (a retriever adapter, an intent model) measure
other things. Each kind registers its comparison with ``gate_kind_register``: the
metrics, which direction is better, and how to read them from an evaluation.

The baseline is the slot's live adapter when it is of the same kind and was evaluated,
else the base model (the run's own "without adapter" figures). The gate passes when no
metric is worse and at least one is better. ``adapter_deploy`` refuses a run that fails
unless an admin forces it with a written reason.

An intent-router run is compared by the router's own rule
(``chat.services.intents.router_version_compare``): its version against the version
routing now, both measured on the current evaluation part, passing when escalate-or-not
precision and recall are both at least the live version's (a retrained version equal to
the live one may go live).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from training.models import AdapterDeployment, TrainingRun

Figures = dict[str, float | None]


@dataclass(frozen=True)
class GateMetric:
    key: str
    label: str
    higher_is_better: bool = True
    percent: bool = False
    decimals: int = 2

    def show(self, value: float | None) -> str:
        if value is None:
            return "none"
        return f"{value:.0%}" if self.percent else f"{value:.{self.decimals}f}"


@dataclass(frozen=True)
class GateKind:
    """How one kind of adapter is compared: ``with_adapter`` / ``without_adapter`` read
    a run's evaluation into ``{metric key: value}``."""

    name: str
    metrics: tuple[GateMetric, ...]
    with_adapter: Callable[[dict[str, Any]], Figures]
    without_adapter: Callable[[dict[str, Any]], Figures]
    # False: "no metric worse" is enough (the intent router's rule).
    needs_gain: bool = True
    # Measures (candidate figures, baseline figures, baseline name) now instead of
    # reading the runs' evaluations (the intent router: against the version routing now).
    measure: Callable[[TrainingRun], tuple[Figures, Figures, str]] | None = None


_KINDS: dict[str, GateKind] = {}


def gate_kind_register(*, algorithms: Iterable[str], kind: GateKind) -> None:
    """Compare runs of ``algorithms`` with ``kind`` (a later registration replaces an
    earlier one for the same algorithm)."""
    for algorithm in algorithms:
        _KINDS[str(algorithm)] = kind


def gate_kind_for(algorithm: str) -> GateKind | None:
    return _KINDS.get(str(algorithm))


@dataclass(frozen=True)
class MetricComparison:
    metric: GateMetric
    candidate: float | None
    baseline: float | None

    @property
    def better(self) -> bool:
        if self.candidate is None or self.baseline is None:
            return False
        if self.metric.higher_is_better:
            return self.candidate > self.baseline
        return self.candidate < self.baseline

    @property
    def worse(self) -> bool:
        if self.candidate is None or self.baseline is None:
            return True
        if self.metric.higher_is_better:
            return self.candidate < self.baseline
        return self.candidate > self.baseline

    def text(self) -> str:
        direction = "higher" if self.metric.higher_is_better else "lower"
        verdict = direction if self.better else ("worse" if self.worse else "not " + direction)
        return (
            f"{self.metric.label} {self.metric.show(self.candidate)} vs "
            f"{self.metric.show(self.baseline)} ({verdict})"
        )


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    candidate: str  # "run-5"
    baseline: str  # "run-3, live for the default slot" / "the base model (...)"
    comparisons: list[MetricComparison] = field(default_factory=list)
    problem: str = ""  # why nothing could be compared, when that is the case

    def summary(self) -> str:
        """One line: what was compared with what, and the outcome."""
        outcome = "better" if self.passed else "not better"
        detail = "; ".join(c.text() for c in self.comparisons) or self.problem
        return f"{self.candidate} vs {self.baseline}: {outcome} ({detail})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "candidate": self.candidate,
            "baseline": self.baseline,
            "comparisons": [
                {
                    "metric": c.metric.label,
                    "candidate": c.candidate,
                    "baseline": c.baseline,
                    "better": c.better,
                }
                for c in self.comparisons
            ],
            "problem": self.problem,
        }

    def refusal(self) -> str:
        detail = "; ".join(c.text() for c in self.comparisons) or self.problem
        return (
            f"{self.candidate} was not deployed: its evaluation is not better than "
            f"{self.baseline}: {detail}. An admin can force the deployment with a written "
            "reason."
        )


def _slot_name(slot: str) -> str:
    return f"slot {slot!r}" if slot else "the default slot"


def deployment_gate_check(*, run: TrainingRun, slot: str = "") -> GateVerdict:
    """Is ``run``'s evaluation better than what is live for ``slot``? A read; the caller
    holds the slot's lock when it acts on the answer."""
    candidate = run.adapter_name
    kind = gate_kind_for(run.algorithm)
    if kind is None:
        return GateVerdict(
            passed=False,
            candidate=candidate,
            baseline="what is live",
            problem=f"{run.algorithm} runs register no evaluation comparison",
        )
    evaluation = run.evaluation if isinstance(run.evaluation, dict) else {}
    if kind.measure is not None:
        figures, baseline_figures, baseline = kind.measure(run)
    else:
        figures = kind.with_adapter(evaluation)
    missing = [m.label for m in kind.metrics if figures.get(m.key) is None]
    if missing:
        return GateVerdict(
            passed=False,
            candidate=candidate,
            baseline="what is live",
            problem=f"{candidate} has no evaluation figure for {', '.join(missing)}",
        )
    if kind.measure is None:
        baseline_figures, baseline = _baseline(run=run, kind=kind, slot=slot)
    comparisons = [
        MetricComparison(
            metric=m, candidate=figures.get(m.key), baseline=baseline_figures.get(m.key)
        )
        for m in kind.metrics
    ]
    passed = all(not c.worse for c in comparisons) and (
        any(c.better for c in comparisons) or not kind.needs_gain
    )
    return GateVerdict(
        passed=passed, candidate=candidate, baseline=baseline, comparisons=comparisons
    )


def _baseline(*, run: TrainingRun, kind: GateKind, slot: str) -> tuple[Figures, str]:
    evaluation = run.evaluation if isinstance(run.evaluation, dict) else {}
    live = (
        AdapterDeployment.objects.filter(kind=run.adapter_kind, slot=slot, active=True)
        .select_related("run")
        .exclude(run=run)
        .first()
    )
    if live is None:
        return (
            kind.without_adapter(evaluation),
            f"the base model (nothing is deployed for {_slot_name(slot)})",
        )
    live_run = live.run
    note = "" if live_run.snapshot_id == run.snapshot_id else ", evaluated on another snapshot"
    if gate_kind_for(live_run.algorithm) is kind:
        live_figures = kind.with_adapter(live_run.evaluation or {})
        if all(live_figures.get(m.key) is not None for m in kind.metrics):
            return live_figures, f"{live_run.adapter_name}, live for {_slot_name(slot)}{note}"
    return (
        kind.without_adapter(evaluation),
        f"the base model ({live_run.adapter_name}, live for {_slot_name(slot)}, has no "
        f"comparable {kind.name} evaluation)",
    )


# --- generative adapters (PPO, GRPO, RLOO, KTO, DPO): the answers they write ---------------


def _judge_figures(side: str) -> Callable[[dict[str, Any]], Figures]:
    def read(evaluation: dict[str, Any]) -> Figures:
        figures = evaluation.get(side) or {}
        return {"judge_mean": figures.get("mean"), "share_above_3": figures.get("share_above_3")}

    return read


GENERATIVE = GateKind(
    name="generative",
    metrics=(
        GateMetric(key="judge_mean", label="judge mean"),
        GateMetric(key="share_above_3", label="share above 3", percent=True),
    ),
    with_adapter=_judge_figures("after"),
    without_adapter=_judge_figures("before"),
)

gate_kind_register(
    algorithms=(
        TrainingRun.Algorithm.PPO,
        TrainingRun.Algorithm.GRPO,
        TrainingRun.Algorithm.RLOO,
        TrainingRun.Algorithm.KTO,
        TrainingRun.Algorithm.DPO,
    ),
    kind=GENERATIVE,
)


# --- retriever adapters: what the assistant cites and answers ------------------------------


def _retriever_figures(side: str) -> Callable[[dict[str, Any]], Figures]:
    def read(evaluation: dict[str, Any]) -> Figures:
        if evaluation.get("kind") != "retriever":
            return {"right_article_first": None, "judge_mean": None}
        figures = evaluation.get(side) or {}
        return {
            "right_article_first": figures.get("right_article_first"),
            "judge_mean": figures.get("mean"),
        }

    return read


RETRIEVAL = GateKind(
    name="retriever",
    metrics=(
        GateMetric(key="right_article_first", label="right article cited first", percent=True),
        GateMetric(key="judge_mean", label="judge mean"),
    ),
    with_adapter=_retriever_figures("after"),
    without_adapter=_retriever_figures("before"),
)

gate_kind_register(algorithms=(TrainingRun.Algorithm.RETRIEVER,), kind=RETRIEVAL)


# --- the intent router: escalate-or-not on the evaluation part, against the live version ---


def _router_side(side: str) -> Callable[[dict[str, Any]], Figures]:
    def read(evaluation: dict[str, Any]) -> Figures:
        if evaluation.get("kind") != "intent_router":
            return {"escalate_precision": None, "escalate_recall": None}
        figures = evaluation.get(side) or {}
        return {
            "escalate_precision": figures.get("escalate_precision"),
            "escalate_recall": figures.get("escalate_recall"),
        }

    return read


def _router_measure(run: TrainingRun) -> tuple[Figures, Figures, str]:
    """The run's version and the version routing now, on the current evaluation part
    (measured again when the part changed since the run)."""
    from chat.services.intents import router_version_compare

    version = run.router_version
    if version is None:
        return {}, {}, "the live router"
    comparison = router_version_compare(version=version)
    live = comparison.live
    routing_itself = live.version == version.name
    return (
        {
            "escalate_precision": comparison.candidate.precision,
            "escalate_recall": comparison.candidate.recall,
        },
        {"escalate_precision": live.precision, "escalate_recall": live.recall},
        f"{live.version}, the live router" + (" (this run's version)" if routing_itself else ""),
    )


INTENT_ROUTER = GateKind(
    name="intent router",
    metrics=(
        GateMetric(key="escalate_precision", label="escalate-or-not precision", decimals=3),
        GateMetric(key="escalate_recall", label="escalate-or-not recall", decimals=3),
    ),
    with_adapter=_router_side("after"),
    without_adapter=_router_side("before"),
    needs_gain=False,
    measure=_router_measure,
)

gate_kind_register(algorithms=(TrainingRun.Algorithm.INTENT_ROUTER,), kind=INTENT_ROUTER)
