"""Takeover, agent replies, notes, hand-back and resolve; the assistant's silence."""

from __future__ import annotations

import threading

import pytest
from django.db import close_old_connections, connection

from chat.models import Conversation, Message
from chat.services import human_request
from escalation import services
from escalation.models import DomainEvent, Ticket

pytestmark = pytest.mark.django_db


def test_take_over_assigns_and_marks_the_human_part(escalated, conversation, agent):
    ticket = services.ticket_claim(ticket=escalated, agent=agent)
    conversation.refresh_from_db()
    assert ticket.status == Ticket.Status.ASSIGNED and ticket.assigned_agent == agent
    assert conversation.handling == Conversation.Handling.HUMAN
    assert conversation.assigned_agent == agent
    marker = conversation.messages.filter(role="system", visibility="public").last()
    assert marker.marker == Message.Marker.HUMAN_START
    assert "Alex Agent" in marker.text
    assert DomainEvent.objects.filter(name="TAKEOVER_STARTED", ticket=ticket).exists()


def test_second_agent_gets_a_clear_error(escalated, agent, second_agent):
    services.ticket_claim(ticket=escalated, agent=agent)
    with pytest.raises(services.TakeoverConflict, match="Alex Agent already took over"):
        services.ticket_claim(ticket=escalated, agent=second_agent)
    escalated.refresh_from_db()
    assert escalated.assigned_agent == agent


def test_take_over_without_escalation_opens_a_ticket(conversation, say, agent):
    say("hi")
    ticket = services.conversation_take_over(conversation=conversation, agent=agent)
    assert ticket.reason == "agent_takeover" and ticket.status == Ticket.Status.ASSIGNED


@pytest.mark.django_db(transaction=True)
def test_takeover_race_has_exactly_one_winner(make_user, customer):
    """Threads with their own connections race for the same ticket, many times over."""
    from tests.factories import ConversationFactory

    agents = [make_user("agents", username=f"racer{i}") for i in range(4)]
    for round_ in range(5):
        conversation = ConversationFactory(customer=customer)
        ticket, _ = services.escalation_open(conversation=conversation, reason="human_request")
        barrier = threading.Barrier(len(agents))
        outcomes: list[str] = []
        lock = threading.Lock()

        def claim(agent, ticket=ticket, barrier=barrier, outcomes=outcomes, lock=lock):
            try:
                barrier.wait()
                services.ticket_claim(ticket=ticket, agent=agent)
                result = f"won:{agent.pk}"
            except services.TakeoverConflict:
                result = "conflict"
            finally:
                close_old_connections()
                connection.close()
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=claim, args=(a,)) for a in agents]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        winners = [o for o in outcomes if o.startswith("won")]
        assert len(winners) == 1, (round_, outcomes)
        assert outcomes.count("conflict") == len(agents) - 1
        ticket.refresh_from_db()
        conversation.refresh_from_db()
        assert f"won:{ticket.assigned_agent_id}" == winners[0]
        assert conversation.assigned_agent_id == ticket.assigned_agent_id
        starts = conversation.messages.filter(marker=Message.Marker.HUMAN_START).count()
        assert starts == 1, round_


def test_answer_in_flight_at_takeover_is_withheld(conversation, agent, scripted):
    """The answer was being written when the agent took over: stored, never shown.

    The turn's own steps in the order the race produces them: the message and its turn
    are stored, the turn is claimed and its answer written, an agent takes over, then
    the turn stores the answer."""
    from chat.assistant.contract import DraftInfo, Prepared, Retrieval, Sentiment
    from chat.review import Verdict
    from chat.services import customer_message_receive
    from chat.services.turns import turn_answer_store, turn_claim_next

    received = customer_message_receive(
        conversation=conversation,
        text="are you there?",
        client_id="q1",
        author=None,
        rate_subject="t",
    )
    claimed = turn_claim_next(conversation_id=conversation.pk, owner="web-1")
    assert claimed.turn == received.turn
    services.conversation_take_over(conversation=conversation, agent=agent)
    stored = turn_answer_store(
        turn=claimed.turn,
        owner="web-1",
        prepared=Prepared(
            passages=[],
            sentiment=Sentiment(label="neutral", score=0.0, method="vader"),
            retrieval=Retrieval(top_score=0.8, min_score=0.3, no_answer=False),
        ),
        verdict=Verdict(route="answer"),
        text="Here is an answer from the bot",
        info=DraftInfo(provider="local", model_name="test"),
        first_token_ms=3,
        stream_id="s1",
    )
    assert not stored.shown and stored.message.visibility == Message.Visibility.WITHHELD
    assert (stored.turn.status, stored.turn.withheld_reason) == ("withheld", "handling=human")


def test_assistant_stays_silent_after_takeover(escalated, conversation, agent, pipeline):
    services.ticket_claim(ticket=escalated, agent=agent)
    assert pipeline.ask(conversation, "hello?") is None  # no turn: the agent answers
    assert pipeline.bot.questions == []
    conversation.refresh_from_db()
    assert not conversation.assistant_may_answer


def test_agent_messages_need_the_takeover(escalated, conversation, agent, second_agent):
    with pytest.raises(services.EscalationError):
        services.agent_message_send(conversation=conversation, agent=agent, text="hi")
    services.ticket_claim(ticket=escalated, agent=agent)
    with pytest.raises(services.EscalationError):
        services.agent_message_send(conversation=conversation, agent=second_agent, text="hi")
    message = services.agent_message_send(
        conversation=conversation, agent=agent, text="Hi, I'm Alex.", client_id="c1"
    )
    again = services.agent_message_send(
        conversation=conversation, agent=agent, text="Hi, I'm Alex.", client_id="c1"
    )
    assert again.pk == message.pk
    assert message.role == "agent" and message.visibility == "public" and message.author == agent
    escalated.refresh_from_db()
    assert escalated.first_response_at == message.created_at
    assert escalated.first_response_seconds >= 0


def test_private_notes_stay_internal(escalated, conversation, second_agent):
    note = services.note_add(conversation=conversation, agent=second_agent, text="VIP customer")
    assert note.visibility == Message.Visibility.INTERNAL


def test_hand_back_lets_the_assistant_answer_again(escalated, conversation, agent, pipeline):
    services.ticket_claim(ticket=escalated, agent=agent)
    services.agent_message_send(conversation=conversation, agent=agent, text="Fixed it for you.")
    services.conversation_hand_back(conversation=conversation, agent=agent)
    conversation.refresh_from_db()
    assert conversation.handling == Conversation.Handling.ASSISTANT
    assert conversation.assigned_agent is None
    end = conversation.messages.filter(role="system").order_by("-seq").first()
    assert end.marker == Message.Marker.HUMAN_END
    turn = pipeline.ask(conversation, "thanks, one more question")
    assert turn.status == "answered"
    texts = [h["text"] for h in pipeline.bot.histories[-1]]
    assert "Fixed it for you." in texts
    assert any("handed the conversation back" in t for t in texts)
    assert DomainEvent.objects.filter(name="HANDED_BACK").exists()


def test_only_the_owner_hands_back(escalated, conversation, agent, second_agent):
    services.ticket_claim(ticket=escalated, agent=agent)
    with pytest.raises(services.EscalationError):
        services.conversation_hand_back(conversation=conversation, agent=second_agent)


def test_resolve_records_outcome_times_and_returns_to_the_assistant(escalated, conversation, agent):
    services.ticket_claim(ticket=escalated, agent=agent)
    services.agent_message_send(conversation=conversation, agent=agent, text="Done.")
    ticket = services.ticket_resolve(ticket=escalated, agent=agent, outcome="approved", note="ok")
    assert ticket.status == Ticket.Status.RESOLVED and ticket.outcome == "approved"
    assert ticket.resolution_seconds >= ticket.first_response_seconds >= 0
    conversation.refresh_from_db()
    assert conversation.handling == Conversation.Handling.ASSISTANT
    event = DomainEvent.objects.get(name="ESCALATION_RESOLVED")
    assert event.payload["outcome"] == "approved"
    with pytest.raises(services.EscalationError):
        services.ticket_resolve(ticket=escalated, agent=agent, outcome="approved")


def test_resolve_rejects_unknown_outcomes(escalated, agent):
    with pytest.raises(services.EscalationError):
        services.ticket_resolve(ticket=escalated, agent=agent, outcome="maybe")


def test_open_tickets_expire(escalated, agent, settings):
    from datetime import timedelta

    from django.utils import timezone

    # the only agent on duty leaves before taking it: it waits in the queue, untaken
    services.agent_presence_set(agent=agent, on_duty=False)
    assert services.tickets_expire() == 0
    later = timezone.now() + timedelta(hours=settings.ESCALATION_TICKET_EXPIRY_HOURS + 1)
    assert services.tickets_expire(now=later) == 1
    escalated.refresh_from_db()
    assert (escalated.status, escalated.outcome) == ("closed", "expired")


def test_on_duty_agents_get_one_email(
    conversation, say, on_duty, second_agent, mailoutbox, django_capture_on_commit_callbacks
):
    services.agent_presence_set(agent=second_agent, on_duty=False)
    say("I want a person")
    with django_capture_on_commit_callbacks(execute=True):
        human_request(conversation=conversation, requested_by=None)
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == [on_duty.email]
    assert "New escalation" in mailoutbox[0].subject
    assert "I want a person" in mailoutbox[0].body
    assert services.ticket_notify_agents(ticket_id=Ticket.objects.get().pk) == 0  # once
    assert len(mailoutbox) == 1


def test_ses_is_used_when_configured(settings, escalated, on_duty):
    from botocore.stub import Stubber

    from escalation import notifications

    settings.USE_SES = True
    notifications.ses_client.cache_clear()
    with Stubber(notifications.ses_client()) as stub:
        stub.add_response("send_email", {"MessageId": "m-1"})
        assert services.ticket_notify_agents(ticket_id=escalated.pk) == 1
        stub.assert_no_pending_responses()
    notifications.ses_client.cache_clear()


def test_on_duty_agent_not_seen_recently_is_not_available(conversation, say, on_duty):
    from datetime import timedelta

    from django.utils import timezone

    from escalation.models import AgentPresence

    AgentPresence.objects.filter(agent=on_duty).update(
        last_seen_at=timezone.now() - timedelta(minutes=10)
    )
    say("hi")
    notice = human_request(conversation=conversation, requested_by=None)
    assert "No one from our support team is available" in notice.text
    services.agent_presence_touch(agent=on_duty)  # the console socket reconnects
    assert services.agents_available().filter(agent=on_duty).exists()
