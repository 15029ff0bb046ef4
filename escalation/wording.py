"""Decisions and reasons in the words agents use, with the numbers kept for a hover.

Pure functions over rows already loaded (no queries): the console, the inbox rows and
the handoff brief say "The customer sounds very unhappy." and keep "Sentiment -0.78
(VADER); a person is asked for at -0.50 or below." for the title attribute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chat.assistant.router import ESCALATING, LABEL_NAMES
from escalation.models import Decision, EscalationRule, Ticket

Kind = EscalationRule.Kind
Outcome = Decision.Outcome

# A ticket's reason code in a few words (rule kinds, and the reasons opened elsewhere).
REASON_LABELS: dict[str, str] = {
    # The intent router's categories (a ticket it opened has the category as reason).
    **{label: LABEL_NAMES[label] for label in ESCALATING},
    Kind.NEGATIVE_SENTIMENT: "Unhappy customer",
    Kind.HUMAN_REQUEST: "Asked for a person",
    Kind.TOXICITY: "Possibly offensive message",
    Kind.PROVIDER_FAILURE: "The assistant failed",
    Kind.REPEATED_NO_ANSWER: "The assistant could not answer",
    Kind.KEYWORD: "Watched words",
    "agent_takeover": "An agent stepped in",
    "harmful_content": "Harmful message",
    Kind.INTENT: "The intent router",
}

# What the outcome of one check means for the customer.
OUTCOME_WORDS: dict[str, str] = {
    Outcome.PROCEED: "No person needed",
    Outcome.ESCALATE: "A person is needed",
    Outcome.HOLD: "A person reviews it",
    Outcome.BLOCK: "Blocked",
    Outcome.ERROR: "Check failed",
}


@dataclass(frozen=True)
class Explained:
    """One decision in plain words (``words``) and its figures (``numbers``, for hover)."""

    words: str
    numbers: str
    fired: bool
    outcome: str
    outcome_words: str
    check: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "words": self.words,
            "numbers": self.numbers,
            "fired": self.fired,
            "outcome": self.outcome,
            "outcome_words": self.outcome_words,
            "check": self.check,
        }


def reason_label(reason: str) -> str:
    return REASON_LABELS.get(reason) or reason.replace("_", " ").capitalize()


def _signed(value: Any) -> str:
    return f"{value:+.2f}" if isinstance(value, int | float) else "?"


def _sentiment(d: Decision, fired: bool) -> tuple[str, str]:
    inputs = d.inputs or {}
    if inputs.get("method") == "bedrock":
        words = (
            "The customer sounds very unhappy."
            if fired
            else "The customer's tone did not call for a person."
        )
        return words, "The sentiment model answered 1 (negative)." if fired else (
            "The sentiment model answered 0 (not negative)."
        )
    score = d.score if d.score is not None else inputs.get("score")
    words = "The customer sounds very unhappy." if fired else "The customer's tone was fine."
    numbers = (
        f"Sentiment {_signed(score)} ({inputs.get('method') or 'VADER'}); "
        f"a person is asked for at {_signed(d.threshold)} or below."
    )
    return words, numbers


def _human_request(d: Decision, fired: bool) -> tuple[str, str]:
    inputs = d.inputs or {}
    if inputs.get("source") == "button":
        return "The customer pressed \u201cTalk to a person\u201d.", "The button always counts."
    matched = inputs.get("matched") or ""
    if fired:
        return (
            f"The customer asked for a person (\u201c{matched}\u201d).",
            f"Matched the phrase \u201c{matched}\u201d.",
        )
    return "The customer did not ask for a person.", "No phrase of the rule matched."


def _keyword(d: Decision, fired: bool) -> tuple[str, str]:
    matched = (d.inputs or {}).get("matched") or ""
    if fired:
        return (
            f"The customer used a watched phrase: \u201c{matched}\u201d.",
            f"Matched the phrase \u201c{matched}\u201d.",
        )
    return "No watched phrases.", "No phrase of the rule matched."


def _toxicity(d: Decision, fired: bool) -> tuple[str, str]:
    inputs = d.inputs or {}
    if d.outcome == Outcome.ERROR:
        return (
            "The offensiveness check failed; the conversation went on.",
            str(inputs.get("error", ""))[:200],
        )
    toxic_words: dict[str, str] = {
        Outcome.BLOCK: "The message is harmful; the assistant did not answer it.",
        Outcome.HOLD: "The message may be offensive; a person should read it.",
    }
    words = toxic_words.get(d.outcome, "The message is not offensive.")
    numbers = (f"Toxicity {d.score:.2f}" if isinstance(d.score, int | float) else "Toxicity ?") + (
        f"; a person reviews from {inputs.get('hold')}, blocked above {inputs.get('harmful')}."
    )
    return words, numbers


def _no_answer(d: Decision, fired: bool) -> tuple[str, str]:
    streak = int(d.score or 0)
    needed = int(d.threshold or 0)
    if fired:
        words = f"The assistant could not answer {streak} questions in a row."
    elif streak:
        words = "The assistant could not answer this one, not yet often enough to call a person."
    else:
        words = "The assistant found an answer."
    top = (d.inputs or {}).get("top_score")
    numbers = f"{streak} unanswered in a row; a person is asked for at {needed}." + (
        f" Best passage match {top:.2f}." if isinstance(top, int | float) else ""
    )
    return words, numbers


FIGURE_NAMES: dict[str, str] = {
    "answer": "answer",
    "small_talk": "small talk",
    "out_of_scope": "out of scope",
    "human_request": "asks for a person",
    "billing_dispute": "billing dispute",
    "vulnerable": "vulnerable customer",
}


def _figure_name(label: str) -> str:
    return FIGURE_NAMES.get(label, label.replace("_", " "))


def _intent(d: Decision, fired: bool) -> tuple[str, str]:
    """The router's category in the words derived from the message; its figures."""
    inputs = d.inputs or {}
    scores = inputs.get("scores") or {}
    top = sorted(scores.items(), key=lambda kv: -kv[1])[:3]
    figures = ", ".join(f"{_figure_name(label)} {p:.2f}" for label, p in top)
    category = _figure_name(d.category)
    because = {
        "threshold": f"{category} reached its threshold",
        "top class": f"{category} is the likeliest class (always escalated)",
        "combined": "the escalating classes together reached the combined threshold",
        "answerable": "the knowledge base covers it",
    }.get(inputs.get("because") or "", "")
    numbers = f"Router {d.model_version or '?'}: {figures}."
    if because:
        numbers += f" {because[0].upper()}{because[1:]}"
        if fired and d.score is not None and d.threshold is not None:
            numbers += f" ({d.score:.2f} >= {d.threshold:.2f})"
        numbers += "."
    words = d.detail or (
        f"{LABEL_NAMES.get(d.category, d.category)}." if d.category else "No category."
    )
    return words, numbers


def _provider_failure(d: Decision, fired: bool) -> tuple[str, str]:
    return "The assistant failed to answer.", str((d.inputs or {}).get("error", ""))[:200]


_BY_KIND: dict[str, Callable[[Decision, bool], tuple[str, str]]] = {
    Kind.INTENT: _intent,
    Kind.NEGATIVE_SENTIMENT: _sentiment,
    Kind.HUMAN_REQUEST: _human_request,
    Kind.KEYWORD: _keyword,
    Kind.TOXICITY: _toxicity,
    Kind.REPEATED_NO_ANSWER: _no_answer,
    Kind.PROVIDER_FAILURE: _provider_failure,
}

CHECK_NAMES: dict[str, str] = {
    Kind.INTENT: "What the message is about",
    Kind.NEGATIVE_SENTIMENT: "Tone",
    Kind.HUMAN_REQUEST: "Asked for a person",
    Kind.KEYWORD: "Watched words",
    Kind.TOXICITY: "Offensive content",
    Kind.REPEATED_NO_ANSWER: "Unanswered questions",
    Kind.PROVIDER_FAILURE: "Assistant failure",
}


def decision_explained(decision: Decision) -> Explained:
    """One audit row in plain words; an unknown kind falls back to its stored detail."""
    fired = decision.fired
    explain = _BY_KIND.get(decision.rule_kind)
    if explain is not None:
        words, numbers = explain(decision, fired)
    else:
        words = decision.detail or reason_label(decision.rule_kind)
        numbers = (
            f"Score {decision.score}, threshold {decision.threshold}."
            if decision.score is not None
            else ""
        )
    return Explained(
        words=words,
        numbers=numbers,
        fired=fired,
        outcome=decision.outcome,
        outcome_words=OUTCOME_WORDS.get(decision.outcome, decision.outcome),
        check=CHECK_NAMES.get(decision.rule_kind) or reason_label(decision.rule_kind),
    )


def ticket_reason_explained(ticket: Ticket, *, turn_detail: str = "") -> dict[str, str]:
    """Why the ticket exists: a label, the plain sentence and the figures (hover).

    The decision that opened it speaks first; else the turn's own words (a router or
    reviewer that decided without an audit row); else the reason code's label."""
    label = reason_label(ticket.reason)
    if ticket.decision_id is not None and ticket.decision is not None:
        explained = decision_explained(ticket.decision)
        return {"label": label, "words": explained.words, "numbers": explained.numbers}
    words = turn_detail or (
        "An agent joined the conversation themselves."
        if ticket.reason == "agent_takeover"
        else label + "."
    )
    return {"label": label, "words": words, "numbers": ticket.reason_detail}
