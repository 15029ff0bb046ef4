"""The decision workflow the blog chains before a draft is shown: should a person step in?

Every enabled rule is evaluated on each customer turn and stored as a ``Decision`` with
its inputs, score, threshold and outcome, so thresholds can later be tuned against what
agents decided. A harmful message (toxicity above the upper band) blocks the turn; any
other rule that fires escalates; the rule with the lowest priority number names the reason.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from chat.models import Conversation, Message
from escalation.models import Decision, DomainEvent, EscalationRule, Priority
from escalation.services.events import event_record
from escalation.services.tickets import customer_notice_for, escalation_open

logger = logging.getLogger(__name__)

Kind = EscalationRule.Kind
Outcome = Decision.Outcome

NOTICE_WITH_HUMAN = "A person from our support team is handling this conversation now."
NOTICE_HARMFUL = (
    "We can't respond to this message. Please keep the conversation respectful; "
    "we're glad to help with your question."
)


@dataclass(frozen=True)
class TurnVerdict:
    escalate: bool = False  # withhold the draft and hand the conversation to a person
    block: bool = False  # harmful content: no draft is generated or shown at all
    reason: str = ""
    customer_notice: str = ""  # shown to the customer instead of the draft
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Evaluation:
    rule: EscalationRule
    outcome: str
    score: float | None = None
    threshold: float | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    detail: str = ""

    @property
    def fired(self) -> bool:
        return self.outcome in (Outcome.ESCALATE, Outcome.HOLD, Outcome.BLOCK)


def patterns_match(patterns: list[str], text: str) -> str:
    """The first pattern found in ``text`` (phrases: case-insensitive, whole words;
    ``re:`` lines: regular expressions), or ""."""
    for pattern in patterns:
        if pattern.startswith("re:"):
            found = re.search(pattern[3:], text, flags=re.IGNORECASE)
        else:
            found = re.search(rf"(?<!\w){re.escape(pattern)}(?!\w)", text, flags=re.IGNORECASE)
        if found:
            return pattern
    return ""


def _negative_sentiment(rule: EscalationRule, sentiment: dict[str, Any]) -> Evaluation:
    method = sentiment.get("method", "vader")
    inputs = {"sentiment": sentiment}
    if method == "bedrock":
        # The blog's chain: the model answers 1 for negative, 0 for positive.
        negative = int(sentiment.get("negative") or 0)
        return Evaluation(
            rule,
            Outcome.ESCALATE if negative == 1 else Outcome.PROCEED,
            score=float(negative),
            threshold=1.0,
            inputs=inputs,
            detail="model answered 1 (negative)" if negative else "",
        )
    score = sentiment.get("score")
    if score is None:
        return Evaluation(rule, Outcome.PROCEED, inputs=inputs, detail="no sentiment score")
    fired = float(score) <= float(rule.threshold if rule.threshold is not None else -0.5)
    return Evaluation(
        rule,
        Outcome.ESCALATE if fired else Outcome.PROCEED,
        score=float(score),
        threshold=rule.threshold,
        inputs=inputs,
        detail=f"VADER compound {score} <= {rule.threshold}" if fired else "",
    )


def _patterns(rule: EscalationRule, text: str) -> Evaluation:
    found = patterns_match(rule.pattern_lines(), text)
    return Evaluation(
        rule,
        Outcome.ESCALATE if found else Outcome.PROCEED,
        score=1.0 if found else 0.0,
        threshold=1.0,
        inputs={"matched": found, "source": "words"},
        detail=f"matched {found!r}" if found else "",
    )


def toxicity_band(*, toxicity: float, hold: float, harmful: float) -> str:
    """The prompt-chaining blog's bands: below ``hold`` proceed, from ``hold`` up to
    ``harmful`` a person reviews, above ``harmful`` the content is harmful."""
    if toxicity > harmful:
        return Outcome.BLOCK
    if toxicity >= hold:
        return Outcome.HOLD
    return Outcome.PROCEED


def _toxicity(rule: EscalationRule, text: str) -> Evaluation | None:
    if not settings.USE_COMPREHEND:
        return None
    from escalation import comprehend

    hold = rule.threshold if rule.threshold is not None else 0.4
    harmful = rule.upper_threshold if rule.upper_threshold is not None else 0.6
    try:
        result = comprehend.toxicity_detect(text=text)
    except Exception as exc:  # the check failing must not stop the conversation
        logger.warning("Comprehend DetectToxicContent failed: %s", exc)
        return Evaluation(rule, Outcome.ERROR, inputs={"error": str(exc)[:300]}, detail="failed")
    toxicity = result["toxicity"]
    outcome = toxicity_band(toxicity=toxicity, hold=hold, harmful=harmful)
    return Evaluation(
        rule,
        outcome,
        score=toxicity,
        threshold=harmful if outcome == Outcome.BLOCK else hold,
        inputs={"labels": result["labels"], "hold": hold, "harmful": harmful},
        detail={"block": "harmful", "hold": "needs a human review"}.get(outcome, ""),
    )


def _no_answer_streak(conversation: Conversation) -> int:
    """Earlier turns in a row without an answer, since the last escalation by this rule."""
    streak = 0
    earlier = Decision.objects.filter(
        conversation=conversation, rule_kind=Kind.REPEATED_NO_ANSWER
    ).values_list("inputs", "outcome")[:50]
    for inputs, outcome in earlier:
        if outcome == Outcome.ESCALATE or not inputs.get("no_answer"):
            break
        streak += 1
    return streak


def _repeated_no_answer(
    rule: EscalationRule, conversation: Conversation, retrieval: dict[str, Any]
) -> Evaluation:
    no_answer = bool(retrieval.get("no_answer"))
    streak = _no_answer_streak(conversation) + 1 if no_answer else 0
    needed = rule.count or 2
    fired = streak >= needed
    return Evaluation(
        rule,
        Outcome.ESCALATE if fired else Outcome.PROCEED,
        score=float(streak),
        threshold=float(needed),
        inputs={"no_answer": no_answer, "retrieval": retrieval},
        detail=f"{streak} turns in a row without an answer" if fired else "",
    )


def rules_evaluate(
    *, conversation: Conversation, text: str, signals: dict[str, Any]
) -> list[Evaluation]:
    """Run every enabled per-turn rule (no writes; Comprehend is called here)."""
    evaluations: list[Evaluation] = []
    for rule in EscalationRule.objects.filter(enabled=True).order_by("priority", "pk"):
        evaluation: Evaluation | None
        if rule.kind == Kind.NEGATIVE_SENTIMENT:
            evaluation = _negative_sentiment(rule, signals.get("sentiment") or {})
        elif rule.kind in (Kind.HUMAN_REQUEST, Kind.KEYWORD):
            evaluation = _patterns(rule, text)
        elif rule.kind == Kind.TOXICITY:
            evaluation = _toxicity(rule, text)
        elif rule.kind == Kind.REPEATED_NO_ANSWER:
            evaluation = _repeated_no_answer(rule, conversation, signals.get("retrieval") or {})
        else:
            evaluation = None  # provider failures are decided in turn_failed
        if evaluation is not None:
            evaluations.append(evaluation)
    return evaluations


def _store(
    evaluation: Evaluation, *, conversation: Conversation, message: Message | None
) -> Decision:
    decision = Decision(
        conversation=conversation,
        message=message,
        rule=evaluation.rule,
        rule_kind=evaluation.rule.kind,
        inputs=evaluation.inputs,
        score=evaluation.score,
        threshold=evaluation.threshold,
        outcome=evaluation.outcome,
        detail=evaluation.detail[:300],
    )
    decision.save()
    return decision


def _sentiment_summary(signals: dict[str, Any]) -> dict[str, Any]:
    sentiment = signals.get("sentiment") or {}
    return {k: sentiment.get(k) for k in ("label", "score", "method") if k in sentiment}


def _escalate(
    *,
    conversation: Conversation,
    message: Message | None,
    evaluation: Evaluation,
    decision: Decision,
    signals: dict[str, Any],
) -> TurnVerdict:
    ticket, _ = escalation_open(
        conversation=conversation,
        reason=evaluation.rule.kind,
        reason_detail=evaluation.detail,
        priority=evaluation.rule.ticket_priority,
        decision=decision,
        trigger_message=message,
        sentiment=_sentiment_summary(signals),
    )
    if evaluation.outcome == Outcome.HOLD:
        event_record(
            name=DomainEvent.Name.HUMAN_REVIEW_REQUESTED,
            conversation=conversation,
            ticket=ticket,
            payload={"toxicity": evaluation.score, "message_id": message.pk if message else None},
        )
    return TurnVerdict(
        escalate=True,
        reason=evaluation.rule.kind,
        customer_notice=customer_notice_for(ticket),
        details={
            "ticket_id": ticket.pk,
            "decision_id": decision.pk,
            "rule": evaluation.rule.name,
            "detail": evaluation.detail,
        },
    )


def turn_review(
    *, conversation: Conversation, customer_message: Message, signals: dict[str, Any]
) -> TurnVerdict:
    """Decide before the draft is shown. ``signals``: {"sentiment": {...}, "retrieval": {...}}.

    - a person handles (or is awaited in) the conversation: ``escalate`` without a new
      ticket (the draft stays withheld);
    - toxicity above the harmful band: ``block`` and HARMFUL_CONTENT_DETECTED;
    - any other rule fires: ``escalate`` (ticket opened, conversation waiting for a person).
    """
    conversation.refresh_from_db(fields=["handling", "status"])
    if conversation.handling != Conversation.Handling.ASSISTANT:
        # Only reachable in a race (the pipeline checks before it prepares): a person
        # took over meanwhile. The draft, if any, stays withheld; no new ticket.
        return TurnVerdict(
            escalate=True,
            reason="with_human",
            customer_notice=NOTICE_WITH_HUMAN,
            details={"handling": conversation.handling},
        )
    evaluations = rules_evaluate(
        conversation=conversation, text=customer_message.text, signals=signals
    )
    with transaction.atomic():
        stored = [
            (e, _store(e, conversation=conversation, message=customer_message)) for e in evaluations
        ]
        blocking = next(((e, d) for e, d in stored if e.outcome == Outcome.BLOCK), None)
        if blocking is not None:
            evaluation, decision = blocking
            event_record(
                name=DomainEvent.Name.HARMFUL_CONTENT_DETECTED,
                conversation=conversation,
                payload={
                    "message_id": customer_message.pk,
                    "toxicity": evaluation.score,
                    "labels": evaluation.inputs.get("labels", {}),
                },
            )
            return TurnVerdict(
                block=True,
                reason="harmful_content",
                customer_notice=NOTICE_HARMFUL,
                details={"decision_id": decision.pk, "toxicity": evaluation.score},
            )
        firing = next(((e, d) for e, d in stored if e.fired), None)
        if firing is None:
            return TurnVerdict(details={"decisions": [d.pk for _, d in stored]})
        evaluation, decision = firing
        return _escalate(
            conversation=conversation,
            message=customer_message,
            evaluation=evaluation,
            decision=decision,
            signals=signals,
        )


def turn_failed(
    *, conversation: Conversation, customer_message: Message, error: str
) -> TurnVerdict:
    """The assistant failed on this turn (provider error or timeout).

    RESPONSE_GENERATION_FAILED is always recorded; the enabled provider-failure rule
    hands the conversation to a person."""
    rule = (
        EscalationRule.objects.filter(enabled=True, kind=Kind.PROVIDER_FAILURE)
        .order_by("priority", "pk")
        .first()
    )
    with transaction.atomic():
        event_record(
            name=DomainEvent.Name.RESPONSE_GENERATION_FAILED,
            conversation=conversation,
            payload={"message_id": customer_message.pk, "error": error[:500]},
        )
        if rule is None:
            return TurnVerdict(reason="provider_failure")
        evaluation = Evaluation(
            rule,
            Outcome.ESCALATE,
            score=1.0,
            threshold=1.0,
            inputs={"error": error[:500]},
            detail=f"assistant failed: {error}"[:300],
        )
        decision = _store(evaluation, conversation=conversation, message=customer_message)
        conversation.refresh_from_db(fields=["handling"])
        return _escalate(
            conversation=conversation,
            message=customer_message,
            evaluation=evaluation,
            decision=decision,
            signals={},
        )


def escalation_request_human(
    *, conversation: Conversation, customer_message: Message | None
) -> TurnVerdict:
    """The customer pressed "Talk to a person": always honoured, and audited."""
    rule = (
        EscalationRule.objects.filter(kind=Kind.HUMAN_REQUEST)
        .order_by("-enabled", "priority")
        .first()
    )
    with transaction.atomic():
        decision = Decision(
            conversation=conversation,
            message=customer_message,
            rule=rule,
            rule_kind=Kind.HUMAN_REQUEST,
            inputs={"source": "button"},
            score=1.0,
            threshold=1.0,
            outcome=Outcome.ESCALATE,
            detail="customer pressed Talk to a person",
        )
        decision.save()
        ticket, _ = escalation_open(
            conversation=conversation,
            reason=Kind.HUMAN_REQUEST,
            reason_detail="button",
            priority=rule.ticket_priority if rule else Priority.NORMAL,
            decision=decision,
            trigger_message=customer_message,
        )
    return TurnVerdict(
        escalate=True,
        reason=Kind.HUMAN_REQUEST,
        customer_notice=customer_notice_for(ticket),
        details={"ticket_id": ticket.pk, "decision_id": decision.pk},
    )
