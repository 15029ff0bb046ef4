"""How the turn asks "is a person needed?" without knowing who decides.

``chat`` is the lowest layer: it never imports the app that decides (``escalation``).
That app registers a ``TurnReviewer`` at start-up (its ``AppConfig.ready``); the turn
pipeline calls whatever is registered. With nothing registered, ``RoutingOnlyReviewer``
routes by the assistant's own signals and never escalates.

The reviewer's calls and their transactions (in ``record``, ``failed`` and
``human_requested`` the caller holds the conversation's row lock, and the conversation
handed over, ``turn.conversation`` or ``conversation``, is the row it locked: the
reviewer may write to it without locking it again):

- ``review(facts)``: decide. May read the database and call external checks; writes
  nothing. Runs before any draft is shown.
- ``record(turn=, verdict=)``: inside the pipeline's transaction that stores the turn's
  outcome: write the audit trail and, for an escalation, open the ticket. Returns the
  verdict completed with what only the write knows (the customer notice, the ticket).
  On the routes the assistant answers (answer, small talk, out of scope) it writes no
  messages: the pipeline appends the answer under the conversation lock it holds.
- ``failed(turn=, error=)``: inside the transaction that fails a turn (provider error,
  timeout, or a dead owner found by the sweep).
- ``human_requested(conversation=, customer_message=)``: the customer pressed "Talk to
  a person"; inside the transaction that posts the notice.
- ``draft_stored(turn=)``: after the commit that stored an escalated turn's withheld
  draft (for example, to start a human-review workflow with the draft in hand).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from chat.assistant.contract import Intent, Retrieval, Sentiment

if TYPE_CHECKING:
    from chat.models import Conversation, Message, Turn


@dataclass(frozen=True)
class EarlierTurn:
    """What the reviewer may know of the conversation's earlier turns."""

    route: str
    status: str
    no_answer: bool
    intent: str


@dataclass(frozen=True)
class TurnFacts:
    """Everything known about a turn before any draft is shown."""

    conversation: Conversation
    customer_message: Message
    sentiment: Sentiment
    retrieval: Retrieval
    intent: Intent | None
    # The turns of the customer messages in the assistant's history (the last 20 public
    # messages), newest first, at most 10.
    earlier_turns: tuple[EarlierTurn, ...] = ()

    @property
    def text(self) -> str:
        return self.customer_message.text


@dataclass(frozen=True)
class Verdict:
    """The decision on a turn.

    ``route`` is a ``Turn.Route`` value. ``reason`` is a stable code (a rule kind or an
    intent category); ``detail`` says it in plain words for agents ("Safety: the
    customer reports smoke from the Hub"); ``customer_notice`` replaces the draft for
    escalated and blocked turns and may precede small talk or a refusal; ``audit`` is the
    reviewer's own data carried from ``review`` to ``record``.
    """

    route: str
    reason: str = ""
    category: str = ""
    detail: str = ""
    priority: str = ""
    customer_notice: str = ""
    audit: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def but(self, **changes: Any) -> Verdict:
        return replace(self, **changes)


class TurnReviewer(Protocol):
    def review(self, facts: TurnFacts) -> Verdict: ...

    def record(self, *, turn: Turn, verdict: Verdict) -> Verdict: ...

    def failed(self, *, turn: Turn, error: str) -> Verdict: ...

    def human_requested(
        self, *, conversation: Conversation, customer_message: Message | None
    ) -> Verdict: ...

    def draft_stored(self, *, turn: Turn) -> None: ...


# Routes the assistant can take on its own, from the router's class.
SELF_SERVICE_ROUTES = {"answer", "small_talk", "out_of_scope"}


class RoutingOnlyReviewer:
    """No escalation app: answer, small talk or out of scope by the router (the
    likeliest of the three; nothing escalates)."""

    def review(self, facts: TurnFacts) -> Verdict:
        from chat.assistant.router import NO_ESCALATION, intent_route

        if facts.intent is None:
            return Verdict(route="answer")
        choice = intent_route(
            facts.intent, policies=NO_ESCALATION, answerable=not facts.retrieval.no_answer
        )
        return Verdict(route=choice.route)

    def record(self, *, turn: Turn, verdict: Verdict) -> Verdict:
        return verdict

    def failed(self, *, turn: Turn, error: str) -> Verdict:
        return Verdict(route="", reason="provider_failure")

    def human_requested(
        self, *, conversation: Conversation, customer_message: Message | None
    ) -> Verdict:
        return Verdict(route="escalate", reason="human_request")

    def draft_stored(self, *, turn: Turn) -> None:
        return None


_registered: TurnReviewer | None = None


def reviewer_register(reviewer: TurnReviewer) -> None:
    """Called once by the deciding app's ``AppConfig.ready``."""
    global _registered
    _registered = reviewer


def reviewer_current() -> TurnReviewer:
    return _registered if _registered is not None else RoutingOnlyReviewer()
