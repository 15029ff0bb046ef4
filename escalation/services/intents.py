"""The intent router's side of escalation: the admin's policies, the reason in plain
words for agents, and the agents' verdicts that become the router's training rows.

Plain words: "Safety: the customer reports smoke from the Hub". The phrase is taken
from the message (the hazard, symptom, threat... words found in it, and the device it
names); when nothing is recognised, the category's name and a short quote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction

from chat.assistant.router import (
    ESCALATING,
    LABEL_NAMES,
    SELF_SERVICE,
    CategoryPolicy,
)
from chat.models import Conversation, IntentExample, Message, Turn
from chat.services.intents import intent_example_record
from escalation.models import IntentPolicy, Priority, Ticket

SHORT_NAMES = {
    "medical": "Medical",
    "safety": "Safety",
    "security": "Security",
    "vulnerable": "Vulnerable customer",
    "legal": "Legal",
    "press": "Press",
    "billing_dispute": "Billing dispute",
    "churn": "Churn",
    "anger": "Anger",
    "sarcasm": "Sarcasm",
    "frustration": "Frustration",
    "human_request": "Asks for a person",
}

PRIORITY_RANK: dict[str, int] = {
    Priority.LOW: 0,
    Priority.NORMAL: 1,
    Priority.HIGH: 2,
    Priority.URGENT: 3,
}


@dataclass(frozen=True)
class Policies:
    """The admin's policies as the router's decision reads them, with what escalation
    adds per category (ticket priority, customer notice)."""

    routing: dict[str, CategoryPolicy]
    priority: dict[str, str]
    notice: dict[str, str]


def intent_policies() -> Policies:
    """Every category's policy: its ``IntentPolicy`` row, or the defaults for a category
    without one (all escalate; medical, safety and security always)."""
    rows = {row.label: row for row in IntentPolicy.objects.all()}
    routing: dict[str, CategoryPolicy] = {}
    priority: dict[str, str] = {}
    notice: dict[str, str] = {}
    for label in ESCALATING:
        row = rows.get(label)
        if row is None:
            routing[label] = CategoryPolicy(always=label in ("medical", "safety", "security"))
            urgent = label in ("medical", "safety")
            priority[label] = str(Priority.URGENT if urgent else Priority.HIGH)
            notice[label] = ""
            continue
        routing[label] = CategoryPolicy(
            escalate=row.escalate, always=row.always_escalate, threshold=row.threshold
        )
        priority[label] = row.ticket_priority
        notice[label] = row.customer_notice.strip()
    return Policies(routing=routing, priority=priority, notice=notice)


# --- plain words -------------------------------------------------------------------------------

# (pattern, phrase, preposition before the device)
_CUES: dict[str, list[tuple[str, str, str]]] = {
    "safety": [
        (
            r"carbon monoxide|\bco (alarm|detector|monitor)|\bco\b.*\bppm\b",
            "a carbon-monoxide alarm",
            "near",
        ),
        (r"\bsmoke|\bsmoking\b", "smoke", "from"),
        (r"\bfire\b|\bflames?\b|on fire|caught fire", "fire", "at"),
        (r"\bspark", "sparks", "from"),
        (r"burning|\bburnt\b|scorch|singe", "a burning smell or scorch marks", "at"),
        (r"melt", "melting", "at"),
        (r"\bgas\b", "a smell of gas", "near"),
        (
            r"too hot|very hot|red hot|scalding|hot to (the )?touch|overheat|glowing",
            "overheating",
            "at",
        ),
        (r"\bwater\b|\bleak|\bdrip|flood|\bwet\b", "water near the electrics", "at"),
        (
            r"(live|bare|exposed|loose|hanging|damaged) (wire|cable)",
            "exposed or damaged wiring",
            "at",
        ),
        (r"\bshock|\bbuzz|crackl", "crackling or shocks", "from"),
    ],
    "medical": [
        (r"swallow", "something swallowed", ""),
        (r"electric shock|electrocut|\bshock", "an electric shock", ""),
        (r"collaps|unconscious|passed out|fainted|not waking", "someone collapsed", ""),
        (
            r"can'?t breathe|cannot breathe|not breathing|struggling to breathe",
            "breathing trouble",
            "",
        ),
        (r"dizzy|fumes|headache", "dizziness or fumes", ""),
        (
            r"\bburn(ed|t)?\b.*\b(hand|arm|finger|skin|leg)|(hand|arm|finger|skin)\b.*\bburn",
            "a burn",
            "",
        ),
        (
            r"oxygen|ventilator|dialysis|medical (device|equipment)|concentrator|pump",
            "a medical device failing",
            "",
        ),
        (r"bleed|blood|injur|hurt", "an injury", ""),
    ],
    "security": [
        (r"hack", "a hacked account", ""),
        (
            r"password.*(changed|reset)|(changed|reset).*password",
            "a password changed without them",
            "",
        ),
        (
            r"e-?mail.*(changed|different)|(changed|different).*e-?mail",
            "an e-mail address changed without them",
            "",
        ),
        (
            r"(log(ged)?[ -]?in|sign(ed)?[ -]?in|login)"
            r".*(not me|wasn'?t me|didn'?t|unknown|someone|another|strange)"
            r"|(someone|stranger).*(log|sign)",
            "someone else logging in",
            "",
        ),
        (
            r"(charge|payment|transaction|debit|withdraw)"
            r".*(recogni[sz]e|unknown|not mine|(didn'?t|never) (make|made|set|authori[sz]e))"
            r"|(don'?t recogni[sz]e|unknown).*(charge|payment|transaction|debit)",
            "payments they do not recognise",
            "",
        ),
        (r"\bcard\b", "card misuse", ""),
        (r"phish|scam|fake|pretend|impersonat|fraud", "a scam or impersonation", ""),
    ],
    "vulnerable": [
        (r"passed away|died|death|bereave|funeral", "a bereavement", ""),
        (r"locked out", "being locked out of the heating", ""),
        (
            r"can'?t afford|cannot afford|can'?t pay|no money|debt|food bank",
            "financial hardship",
            "",
        ),
        (
            r"(no|without) (heat|heating|power|electricity)|freezing|\bcold\b",
            "no heating or power",
            "",
        ),
        (r"oxygen|dialysis|medical equipment", "dependence on powered medical equipment", ""),
    ],
    "legal": [
        (r"solicitor|lawyer|attorney", "a solicitor", ""),
        (r"small claims|\bcourt\b", "court action", ""),
        (r"\bsu(e|ing)\b|lawsuit|legal action", "legal action", ""),
        (r"ombudsman", "the ombudsman", ""),
        (r"regulator|ofgem|\bcru\b", "the regulator", ""),
        (r"data protection|gdpr|\bico\b|\bdpc\b", "the data-protection authority", ""),
        (r"illegal|unlawful", "illegal conduct", ""),
    ],
    "press": [
        (
            r"journalist|reporter|newspaper|editor|column|the (times|guardian|independent)",
            "a journalist or newspaper",
            "",
        ),
        (r"\btv\b|television|\bbbc\b|\brte\b|radio", "TV or radio", ""),
        (
            r"social media|twitter|tiktok|facebook|instagram|reddit|\bx\b|viral|go public",
            "going public on social media",
            "",
        ),
    ],
    "billing_dispute": [
        (r"charged twice|double[- ]charged|twice", "a double charge", ""),
        (r"overcharg|too much|way more", "an overcharge", ""),
        (r"chargeback", "a chargeback", ""),
        (r"refund|money back|pay (me )?back", "a refund demand", ""),
        (r"\bfee\b|\bfees\b", "a fee", ""),
        (r"wrong (amount|bill)|incorrect", "a wrong amount", ""),
    ],
    "churn": [
        (
            r"switch|another (supplier|company|provider)|leav|cancel|go elsewhere",
            "leaving Brightwave",
            "",
        ),
    ],
}

_DEVICES = [
    (r"\bhub\b", "the Hub"),
    (r"thermostat", "the thermostat"),
    (r"\bclamp\b|transmitter", "the energy clamp"),
    (r"fuse ?box|consumer unit|breaker", "the fuse box"),
    (r"\bmeter\b", "the meter"),
    (r"\bsocket|\bplug\b", "a socket"),
    (r"boiler", "the boiler"),
]

_VERBS = {
    "safety": "reports",
    "medical": "reports",
    "security": "reports",
    "vulnerable": "reports",
    "legal": "mentions",
    "press": "mentions",
    "billing_dispute": "disputes",
    "churn": "threatens",
}


def _quote(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1].rsplit(" ", 1)[0] + "…"
    return f"\u201c{text}\u201d"


def intent_detail(*, category: str, text: str, evidence: str = "") -> str:
    """The reason for agents in plain words, derived from the customer's message."""
    name = SHORT_NAMES.get(category, LABEL_NAMES.get(category, category))
    lowered = text.lower()
    for pattern, phrase, preposition in _CUES.get(category, []):
        if re.search(pattern, lowered):
            device = next((d for p, d in _DEVICES if re.search(p, lowered)), "")
            where = f" {preposition} {device}" if device and preposition else ""
            child = (
                " (a child)"
                if category == "medical"
                and re.search(r"\b(child|son|daughter|baby|toddler|kid)", lowered)
                else ""
            )
            return f"{name}: the customer {_VERBS[category]} {phrase}{where}{child}."[:300]
    quoted = _quote(evidence or text)
    if category == "human_request":
        return f"The customer asks for a person: {quoted}."[:300]
    return f"{name}: the customer wrote {quoted}."[:300]


# --- agents' verdicts become training rows ------------------------------------------------------


def _self_service_guess(turn: Turn | None) -> str:
    """The router's likeliest non-escalating class for the turn (what the assistant
    would have done), "answer" when unknown."""
    scores = turn.intent_scores if turn is not None else {}
    if not scores:
        return "answer"
    return max(SELF_SERVICE, key=lambda c: (float(scores.get(c, 0.0)), c == "answer"))


def ticket_person_needed_record(
    *, ticket: Ticket, agent: User, person_needed: bool, category: str = ""
) -> IntentExample | None:
    """An agent's verdict on a resolved ticket as a router training row, on the
    message that was escalated: "a person was needed" with the category (the agent's
    pick, else the router's category that escalated it), or "the assistant could have
    answered" (the agent's pick among answer / small talk / out of scope, else the
    router's own likeliest of those). None when there is no message or no category to
    learn (a person was needed for a reason the router does not know, such as a
    failure of the assistant). Call inside the resolve transaction."""
    message = ticket.trigger_message
    if message is None:
        return None
    turn = Turn.objects.filter(customer_message=message).first()
    if person_needed:
        label = category if category in ESCALATING else ""
        if not label and ticket.reason in ESCALATING:
            label = ticket.reason
        if not label:
            return None
    else:
        label = category if category in SELF_SERVICE else _self_service_guess(turn)
    return intent_example_record(
        message=message,
        text=message.text,
        label=label,
        source=IntentExample.Source.AGENT_RESOLVE,
        recorded_by=agent,
        note=f"ticket {ticket.pk}: "
        + ("a person was needed" if person_needed else "the assistant could have answered"),
    )


@transaction.atomic
def conversation_flag(
    *,
    conversation: Conversation,
    agent: User,
    category: str,
    message: Message | None = None,
    note: str = "",
) -> IntentExample:
    """An agent says a message the assistant kept should have come to a person, and
    why (``category``). Without ``message``, the customer's last message the assistant
    answered itself. Recorded as a router training row (``agent_flag``)."""
    from escalation.services.tickets import EscalationError

    if category not in ESCALATING:
        raise EscalationError("Pick why it should have come to a person.", code="invalid")
    if message is None:
        turn = (
            Turn.objects.filter(conversation=conversation, route__in=list(SELF_SERVICE))
            .select_related("customer_message")
            .order_by("-customer_message__seq")
            .first()
        )
        message = turn.customer_message if turn is not None else None
    if message is None or message.conversation_id != conversation.pk:
        raise EscalationError(
            "There is no message the assistant answered in this conversation.", code="invalid"
        )
    if message.role != Message.Role.CUSTOMER:
        raise EscalationError("Flag a message the customer wrote.", code="invalid")
    return intent_example_record(
        message=message,
        text=message.text,
        label=category,
        source=IntentExample.Source.AGENT_FLAG,
        recorded_by=agent,
        note=note,
    )
