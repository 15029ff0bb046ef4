"""The decision the blog chains before a draft is shown: should a person step in?

``EscalationReviewer`` is the ``chat.review.TurnReviewer`` this app registers at
start-up; the chat turn calls it and never imports this module.

Every enabled rule is evaluated on each customer turn and stored as a ``Decision`` with
its inputs, score, threshold and outcome (and the turn it was made on), so thresholds
can later be tuned against what agents decided. A harmful message (toxicity above the
upper band) blocks the turn; any other rule that fires escalates; the rule with the
lowest priority number names the reason, and the ticket gets the most urgent priority
of the rules that fired.

The intent router's rule (``intent``) decides the route: one of its escalating
categories under the admin's ``IntentPolicy`` rows (the reason is then the category,
e.g. "safety", and the detail says it in plain words), or answer / small talk / out of
scope. A category's customer notice (the safety advice) opens the escalation notice.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from chat.assistant.router import LABEL_NAMES, NO_ESCALATION, SELF_SERVICE, intent_route
from chat.models import Conversation, Message, Turn
from chat.review import TurnFacts, Verdict
from escalation.models import Decision, DomainEvent, EscalationRule, Priority, Ticket
from escalation.services.events import event_record
from escalation.services.intents import (
    PRIORITY_RANK,
    Policies,
    intent_detail,
)
from escalation.services.rules import rule_book
from escalation.services.tickets import (
    customer_notice_for,
    escalation_open,
    workflow_start_queue,
)

logger = logging.getLogger(__name__)

Kind = EscalationRule.Kind
Outcome = Decision.Outcome

NOTICE_HARMFUL = (
    "We can't respond to this message. Please keep the conversation respectful; "
    "we're glad to help with your question."
)


@dataclass
class Evaluation:
    rule: EscalationRule
    outcome: str
    score: float | None = None
    threshold: float | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    detail: str = ""
    # The intent router's rule only: its category and route, the model version, and
    # what the category's policy adds (ticket priority, customer notice).
    category: str = ""
    route: str = ""
    model_version: str = ""
    priority: str = ""
    notice: str = ""

    @property
    def ticket_priority(self) -> str:
        return self.priority or self.rule.ticket_priority

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


def _negative_sentiment(rule: EscalationRule, facts: TurnFacts) -> Evaluation:
    sentiment = facts.sentiment
    inputs = {"label": sentiment.label, "score": sentiment.score, "method": sentiment.method}
    if sentiment.method == "bedrock":
        # The blog's chain: the model answers 1 for negative, 0 for positive.
        return Evaluation(
            rule,
            Outcome.ESCALATE if sentiment.negative else Outcome.PROCEED,
            score=1.0 if sentiment.negative else 0.0,
            threshold=1.0,
            inputs=inputs,
            detail="The sentiment check found the message clearly negative."
            if sentiment.negative
            else "",
        )
    threshold = rule.threshold if rule.threshold is not None else -0.5
    fired = sentiment.score <= threshold
    return Evaluation(
        rule,
        Outcome.ESCALATE if fired else Outcome.PROCEED,
        score=sentiment.score,
        threshold=threshold,
        inputs=inputs,
        detail=(
            f"The customer sounds very unhappy (sentiment {sentiment.score:+.2f}, "
            f"escalates at {threshold:+.2f} or below)."
        )
        if fired
        else "",
    )


def _intent(rule: EscalationRule, facts: TurnFacts, policies: Policies) -> Evaluation | None:
    """The router's class under the admin's policies (no router signal: not evaluated)."""
    intent = facts.intent
    if intent is None:
        return None
    choice = intent_route(
        intent, policies=policies.routing, answerable=not facts.retrieval.no_answer
    )
    inputs = {
        "label": intent.label,
        "confidence": round(intent.confidence, 4),
        "scores": {k: round(v, 4) for k, v in sorted(intent.scores.items())},
        "route": choice.route,
        "because": choice.because,
    }
    if intent.evidence:
        inputs["evidence"] = intent.evidence
    if not choice.escalates:
        return Evaluation(
            rule,
            Outcome.PROCEED,
            score=choice.score,
            inputs=inputs,
            detail=f"Routed to: {LABEL_NAMES[choice.route].lower()}"
            + (
                " (the knowledge base covers it; out of scope was not sure)."
                if choice.because == "answerable"
                else "."
            ),
            category=choice.route,
            route=choice.route,
            model_version=intent.model_version,
        )
    category = choice.category
    detail = intent_detail(category=category, text=facts.text, evidence=intent.evidence)
    return Evaluation(
        rule,
        Outcome.ESCALATE,
        score=round(choice.score, 4),
        threshold=round(choice.threshold, 4),
        inputs={**inputs, "category": category},
        detail=detail,
        category=category,
        route=Turn.Route.ESCALATE,
        model_version=intent.model_version,
        priority=policies.priority.get(category, ""),
        notice=policies.notice.get(category, ""),
    )


def _self_service_route(evaluations: list[Evaluation], facts: TurnFacts) -> str:
    """Answer, small talk or out of scope: the router's route when its rule ran, else
    the likeliest of the three by its scores (answer without a router)."""
    routed = next((e.route for e in evaluations if e.rule.kind == Kind.INTENT and e.route), "")
    if routed in SELF_SERVICE:
        return routed
    if facts.intent is None:
        return Turn.Route.ANSWER
    answerable = not facts.retrieval.no_answer
    return intent_route(facts.intent, policies=NO_ESCALATION, answerable=answerable).route


def _patterns(rule: EscalationRule, text: str) -> Evaluation:
    found = patterns_match(rule.pattern_lines(), text)
    what = "asked for a person" if rule.kind == Kind.HUMAN_REQUEST else "used a watched phrase"
    return Evaluation(
        rule,
        Outcome.ESCALATE if found else Outcome.PROCEED,
        score=1.0 if found else 0.0,
        threshold=1.0,
        inputs={"matched": found, "source": "words"},
        detail=f"The customer {what}: \u201c{found}\u201d." if found else "",
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
        detail={
            "block": f"The message is harmful (toxicity {toxicity:.2f}).",
            "hold": f"The message may be toxic (toxicity {toxicity:.2f}): a person reviews it.",
        }.get(outcome, ""),
    )


def _repeated_no_answer(rule: EscalationRule, facts: TurnFacts) -> Evaluation:
    """ "I don't know" this turn and on the turns right before it (since the last
    escalation)."""
    no_answer = facts.retrieval.no_answer
    streak = 0
    if no_answer:
        streak = 1
        for earlier in facts.earlier_turns:
            if earlier.route == Turn.Route.ESCALATE or not earlier.no_answer:
                break
            streak += 1
    needed = rule.count or 2
    fired = streak >= needed
    return Evaluation(
        rule,
        Outcome.ESCALATE if fired else Outcome.PROCEED,
        score=float(streak),
        threshold=float(needed),
        inputs={"no_answer": no_answer, "top_score": facts.retrieval.top_score},
        detail=f"The assistant could not answer {streak} questions in a row." if fired else "",
    )


def rules_evaluate(*, facts: TurnFacts) -> list[Evaluation]:
    """Run every enabled per-turn rule (no writes; Comprehend is called here)."""
    evaluations: list[Evaluation] = []
    book = rule_book()
    for rule in book.enabled:
        evaluation: Evaluation | None
        if rule.kind == Kind.INTENT:
            evaluation = _intent(rule, facts, book.policies)
        elif rule.kind == Kind.NEGATIVE_SENTIMENT:
            evaluation = _negative_sentiment(rule, facts)
        elif rule.kind in (Kind.HUMAN_REQUEST, Kind.KEYWORD):
            evaluation = _patterns(rule, facts.text)
        elif rule.kind == Kind.TOXICITY:
            evaluation = _toxicity(rule, facts.text)
        elif rule.kind == Kind.REPEATED_NO_ANSWER:
            evaluation = _repeated_no_answer(rule, facts)
        else:
            evaluation = None  # provider failures are decided in ``failed``
        if evaluation is not None:
            evaluations.append(evaluation)
    return evaluations


def _decision(
    evaluation: Evaluation,
    *,
    conversation: Conversation,
    message: Message | None,
    turn: Turn | None,
) -> Decision:
    return Decision(
        conversation=conversation,
        message=message,
        turn=turn,
        rule=evaluation.rule,
        rule_kind=evaluation.rule.kind,
        inputs=evaluation.inputs,
        score=evaluation.score,
        threshold=evaluation.threshold,
        outcome=evaluation.outcome,
        detail=evaluation.detail[:300],
        category=evaluation.category[:30],
        model_version=evaluation.model_version[:80],
    )


def _sentiment_summary(turn: Turn) -> dict[str, Any]:
    if not turn.sentiment_label:
        return {}
    return {
        "label": turn.sentiment_label,
        "score": turn.sentiment_score,
        "method": turn.sentiment_method,
    }


class EscalationReviewer:
    """Decides every customer turn by the enabled rules (see ``chat.review``)."""

    def review(self, facts: TurnFacts) -> Verdict:
        evaluations = rules_evaluate(facts=facts)
        blocking = next((e for e in evaluations if e.outcome == Outcome.BLOCK), None)
        if blocking is not None:
            return Verdict(
                route=Turn.Route.BLOCK,
                reason="harmful_content",
                detail=blocking.detail,
                customer_notice=NOTICE_HARMFUL,
                audit=evaluations,
            )
        fired = [e for e in evaluations if e.fired]
        if fired:
            firing = fired[0]
            reason = firing.category or firing.rule.kind
            return Verdict(
                route=Turn.Route.ESCALATE,
                reason=reason,
                category=reason,
                detail=firing.detail,
                priority=max(
                    (e.ticket_priority for e in fired), key=lambda p: PRIORITY_RANK.get(p, 0)
                ),
                audit=evaluations,
            )
        return Verdict(route=_self_service_route(evaluations, facts), audit=evaluations)

    def record(self, *, turn: Turn, verdict: Verdict) -> Verdict:
        """Store the audit rows; block: HARMFUL_CONTENT_DETECTED; escalate: open the
        ticket (its workflow starts once the turn's draft is settled)."""
        conversation, message = turn.conversation, turn.customer_message
        evaluations: list[Evaluation] = verdict.audit or []
        decisions = Decision.objects.bulk_create(
            [
                _decision(e, conversation=conversation, message=message, turn=turn)
                for e in evaluations
            ]
        )
        by_evaluation = dict(zip(map(id, evaluations), decisions, strict=True))
        if verdict.route == Turn.Route.BLOCK:
            blocking = next(e for e in evaluations if e.outcome == Outcome.BLOCK)
            event_record(
                name=DomainEvent.Name.HARMFUL_CONTENT_DETECTED,
                conversation=conversation,
                payload={
                    "message_id": message.pk,
                    "toxicity": blocking.score,
                    "labels": blocking.inputs.get("labels", {}),
                },
            )
            return verdict
        if verdict.route != Turn.Route.ESCALATE:
            return verdict
        firing = next(e for e in evaluations if e.fired)
        ticket, _ = escalation_open(
            conversation=conversation,
            reason=verdict.reason,
            reason_detail=verdict.detail,
            priority=verdict.priority or Priority.NORMAL,
            decision=by_evaluation[id(firing)],
            trigger_message=message,
            sentiment=_sentiment_summary(turn),
            draft_follows=True,
            locked=True,
        )
        if firing.outcome == Outcome.HOLD:
            event_record(
                name=DomainEvent.Name.HUMAN_REVIEW_REQUESTED,
                conversation=conversation,
                ticket=ticket,
                payload={"toxicity": firing.score, "message_id": message.pk},
            )
        # A category's own advice (safety, medical) comes first, before a person joins.
        lead = next((e.notice for e in evaluations if e.fired and e.notice), "")
        notice = customer_notice_for(ticket)
        return verdict.but(
            customer_notice=f"{lead}\n\n{notice}" if lead else notice,
            extra={"ticket_id": ticket.pk},
        )

    def failed(self, *, turn: Turn, error: str) -> Verdict:
        """RESPONSE_GENERATION_FAILED is always recorded; the enabled provider-failure
        rule hands the conversation to a person."""
        conversation, message = turn.conversation, turn.customer_message
        event_record(
            name=DomainEvent.Name.RESPONSE_GENERATION_FAILED,
            conversation=conversation,
            payload={"message_id": message.pk, "error": error[:500]},
        )
        rule = next((r for r in rule_book().enabled if r.kind == Kind.PROVIDER_FAILURE), None)
        if rule is None:
            return Verdict(route="", reason=Kind.PROVIDER_FAILURE)
        evaluation = Evaluation(
            rule,
            Outcome.ESCALATE,
            score=1.0,
            threshold=1.0,
            inputs={"error": error[:500]},
            detail=f"The assistant could not answer ({error})."[:300],
        )
        decision = _decision(evaluation, conversation=conversation, message=message, turn=turn)
        decision.save()
        ticket, _ = escalation_open(
            conversation=conversation,
            reason=rule.kind,
            reason_detail=evaluation.detail,
            priority=rule.ticket_priority,
            decision=decision,
            trigger_message=message,
            sentiment=_sentiment_summary(turn),
            locked=True,
        )
        return Verdict(
            route=Turn.Route.ESCALATE,
            reason=rule.kind,
            category=rule.kind,
            detail=evaluation.detail,
            priority=rule.ticket_priority,
            customer_notice=customer_notice_for(ticket),
            extra={"ticket_id": ticket.pk},
        )

    def human_requested(
        self, *, conversation: Conversation, customer_message: Message | None
    ) -> Verdict:
        """The customer pressed "Talk to a person": always honoured, and audited."""
        rule = min(
            (r for r in rule_book().rules if r.kind == Kind.HUMAN_REQUEST),
            key=lambda r: (not r.enabled, r.priority, r.pk),
            default=None,
        )
        decision = Decision(
            conversation=conversation,
            message=customer_message,
            rule=rule,
            rule_kind=Kind.HUMAN_REQUEST,
            inputs={"source": "button"},
            score=1.0,
            threshold=1.0,
            outcome=Outcome.ESCALATE,
            detail="The customer pressed \u201cTalk to a person\u201d.",
        )
        decision.save()
        ticket, _ = escalation_open(
            conversation=conversation,
            reason=Kind.HUMAN_REQUEST,
            reason_detail="button",
            priority=rule.ticket_priority if rule else Priority.NORMAL,
            decision=decision,
            trigger_message=customer_message,
            locked=True,
        )
        return Verdict(
            route=Turn.Route.ESCALATE,
            reason=Kind.HUMAN_REQUEST,
            customer_notice=customer_notice_for(ticket),
            extra={"ticket_id": ticket.pk},
        )

    def draft_stored(self, *, turn: Turn) -> None:
        """The escalated turn's draft is settled: start the human-review workflow now,
        with the draft in its input."""
        from escalation import stepfunctions

        if not stepfunctions.workflow_configured():
            return  # no workflow to start: no need to look the ticket up
        ticket = (
            Ticket.objects.filter(
                conversation_id=turn.conversation_id, trigger_message_id=turn.customer_message_id
            )
            .order_by("-pk")
            .first()
        )
        if ticket is not None:
            workflow_start_queue(ticket_id=ticket.pk)
