"""The agent sockets: live inbox, talking to the customer's socket, typing both ways."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from config.routing import websocket_urlpatterns
from escalation import services
from escalation.models import Ticket
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db(transaction=True)

application = URLRouter(websocket_urlpatterns)


def socket(path: str, user) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path)
    communicator.scope["user"] = user
    communicator.scope["cookies"] = {}
    return communicator


async def frames_until(communicator, frame_type: str, limit: int = 20) -> dict:
    for _ in range(limit):
        frame = await communicator.receive_json_from(timeout=5)
        if frame["type"] == frame_type:
            return frame
    raise AssertionError(f"no {frame_type} frame")


async def escalate_by_words(conversation, text):
    """A customer turn through the real pipeline (the model provider is scripted)."""
    from chat import turns
    from chat.services import customer_message_receive

    received = await database_sync_to_async(customer_message_receive)(
        conversation=conversation, text=text, client_id="w1", author=None, rate_subject="t"
    )
    return await turns.turn_await(turn_id=received.turn.pk, conversation_id=conversation.pk)


async def test_new_ticket_appears_in_an_open_inbox(agent, customer, scripted):
    conversation = await database_sync_to_async(ConversationFactory)(customer=customer)
    inbox = socket("/ws/agent/inbox/", agent)
    connected, _ = await inbox.connect()
    assert connected
    snapshot = await inbox.receive_json_from(timeout=5)
    assert (snapshot["type"], snapshot["tickets"]) == ("inbox.snapshot", [])
    turn = await escalate_by_words(conversation, "This is the worst service ever, I'm furious")
    frame = await frames_until(inbox, "ticket")
    ticket = await database_sync_to_async(Ticket.objects.get)(conversation=conversation)
    assert frame["change"] == "created"
    assert frame["ticket"]["id"] == ticket.pk
    assert frame["ticket"]["reason"] == "anger" and frame["ticket"]["priority"] == "high"
    assert frame["ticket"]["reason_detail"].startswith("Anger: the customer wrote")
    assert frame["ticket"]["sentiment"]["score"] == turn.sentiment_score < -0.5
    assert frame["ticket"]["last_customer_message"].startswith("This is the worst")
    await inbox.disconnect()


async def test_an_inbox_that_missed_a_ticket_event_gets_it_on_resync(
    agent, customer, scripted, monkeypatch
):
    """The page asks for the whole inbox every minute: a ticket whose event never reached
    this socket (lost in the channel layer) shows up then, not only after a reconnect."""
    from escalation.services import tickets as ticket_services

    conversation = await database_sync_to_async(ConversationFactory)(customer=customer)
    inbox = socket("/ws/agent/inbox/", agent)
    assert (await inbox.connect())[0]
    assert (await frames_until(inbox, "inbox.snapshot"))["tickets"] == []
    monkeypatch.setattr(ticket_services, "ticket_publish", lambda ticket, change: None)
    await escalate_by_words(conversation, "This is the worst service ever, I'm furious")
    assert await inbox.receive_nothing(timeout=0.5)

    await inbox.send_json_to({"type": "snapshot"})
    snapshot = await frames_until(inbox, "inbox.snapshot")
    ticket = await database_sync_to_async(Ticket.objects.get)(conversation=conversation)
    assert [t["id"] for t in snapshot["tickets"]] == [ticket.pk]
    await inbox.disconnect()


async def test_an_agent_page_that_missed_a_message_event_gets_it_on_resume(
    agent, customer, scripted, monkeypatch
):
    """The conversation page asks every 30 s for what it may have missed: a customer
    message whose event never reached the agent's socket arrives then, once."""
    from chat.services import conversations as conversation_services
    from chat.services import customer_message_receive

    conversation = await database_sync_to_async(ConversationFactory)(customer=customer)
    await escalate_by_words(conversation, "I hate this, it's broken")
    agent_ws = socket(f"/ws/agent/conversations/{conversation.pk}/", agent)
    assert (await agent_ws.connect())[0]
    shown = []
    while True:
        frame = await agent_ws.receive_json_from(timeout=5)
        if frame["type"] == "message":
            shown.append(frame["message"]["seq"])
        if frame["type"] == "ticket":
            break
    last = max(shown)

    monkeypatch.setattr(conversation_services, "publish_on_commit", lambda group, event: None)
    await database_sync_to_async(customer_message_receive)(
        conversation=conversation,
        text="hello? anyone?",
        client_id="c2",
        author=None,
        rate_subject="t",
    )
    while not await agent_ws.receive_nothing(timeout=0.5):
        assert (await agent_ws.receive_json_from())["type"] != "message"

    await agent_ws.send_json_to({"type": "resume", "after_seq": last})
    missed = await frames_until(agent_ws, "message")
    assert missed["message"]["text"] == "hello? anyone?"
    assert missed["message"]["seq"] == last + 1
    await agent_ws.send_json_to({"type": "resume", "after_seq": 0})
    assert await agent_ws.receive_nothing(timeout=0.5)  # nothing twice

    await agent_ws.send_json_to({"type": "resume", "after_seq": "ten"})
    assert (await frames_until(agent_ws, "error"))["code"] == "invalid"
    await agent_ws.disconnect()


async def test_customers_cannot_open_the_inbox(customer):
    inbox = socket("/ws/agent/inbox/", customer)
    await inbox.connect()
    assert (await inbox.receive_output(timeout=5))["type"] == "websocket.close"
    await inbox.disconnect()


async def test_live_talk_typing_and_notes_between_agent_and_customer(agent, customer):
    conversation = await database_sync_to_async(ConversationFactory)(customer=customer)
    await escalate_by_words(conversation, "I hate this, it's broken")
    customer_ws = socket(f"/ws/chat/{conversation.pk}/", customer)
    agent_ws = socket(f"/ws/agent/conversations/{conversation.pk}/", agent)
    assert (await customer_ws.connect())[0]
    assert (await agent_ws.connect())[0]
    state = await frames_until(agent_ws, "conversation.state")
    assert state["handling"] == "waiting_for_human"

    # before the takeover the agent may not write to the customer
    await agent_ws.send_json_to({"type": "message", "text": "hi", "client_id": "a0"})
    error = await frames_until(agent_ws, "error")
    assert error["code"] == "not_owner"

    await database_sync_to_async(services.conversation_take_over)(
        conversation=conversation, agent=agent
    )
    joined = await frames_until(customer_ws, "message")
    while "joined" not in joined["message"]["text"]:
        joined = await frames_until(customer_ws, "message")
    customer_state = await frames_until(customer_ws, "conversation.state")
    assert customer_state["handling"] == "human" and customer_state["agent_name"] == "Alex Agent"

    # typing: agent -> customer
    await agent_ws.send_json_to({"type": "typing", "is_typing": True})
    typing = await frames_until(customer_ws, "typing")
    assert typing == {
        "type": "typing",
        "role": "agent",
        "author_name": "Alex Agent",
        "is_typing": True,
    }

    # typing: customer -> agent
    await customer_ws.send_json_to({"type": "typing", "is_typing": True})
    typing = await frames_until(agent_ws, "typing")
    assert typing["role"] == "customer" and typing["is_typing"] is True

    # a private note reaches agents only
    await agent_ws.send_json_to({"type": "note", "text": "refund approved internally"})
    note = await frames_until(agent_ws, "message")
    while note["message"]["text"] != "refund approved internally":
        note = await frames_until(agent_ws, "message")
    assert note["message"]["visibility"] == "internal"

    # the agent's message reaches the customer live under the agent's name
    await agent_ws.send_json_to(
        {"type": "message", "text": "Hi, I'm Alex. Sorry!", "client_id": "a1"}
    )
    reply = await frames_until(customer_ws, "message")
    assert reply["message"]["text"] == "Hi, I'm Alex. Sorry!"  # the note never arrived
    assert reply["message"]["role"] == "agent" and reply["message"]["author_name"] == "Alex Agent"
    assert "visibility" not in reply["message"]

    await customer_ws.disconnect()
    await agent_ws.disconnect()
    ticket = await database_sync_to_async(Ticket.objects.get)(conversation=conversation)
    assert ticket.first_response_at is not None


async def test_agent_conversation_socket_shows_withheld_drafts(agent, customer, scripted):
    scripted.answer = "draft answer"
    conversation = await database_sync_to_async(ConversationFactory)(customer=customer)
    turn = await escalate_by_words(conversation, "terrible, awful, I hate this")
    assert turn.status == "escalated"
    agent_ws = socket(f"/ws/agent/conversations/{conversation.pk}/", agent)
    await agent_ws.connect()
    frames = [await frames_until(agent_ws, "message") for _ in range(4)]
    await agent_ws.disconnect()

    draft = next(f["message"] for f in frames if f["message"]["role"] == "assistant")
    assert (draft["text"], draft["visibility"]) == ("draft answer", "withheld")
    assert draft["turn"]["reason"] == draft["turn"]["category"] == "anger"
    assert (
        draft["turn"]["detail"]
        == "Anger: the customer wrote \u201cterrible, awful, I hate this\u201d."
    )


async def test_answer_streaming_when_the_agent_takes_over_is_never_shown(agent, customer, scripted):
    """The chat pipeline streams an answer; mid-stream an agent takes over. The answer is
    stored withheld, the customer's stream is cancelled and no assistant message arrives."""
    import asyncio

    from chat import turns
    from chat.models import Message
    from chat.services import customer_message_receive

    conversation = await database_sync_to_async(ConversationFactory)(customer=customer)
    scripted.answer = "Hello from the bot"
    scripted.gate = asyncio.Event()
    customer_ws = socket(f"/ws/chat/{conversation.pk}/", customer)
    await customer_ws.connect()
    received = await database_sync_to_async(customer_message_receive)(
        conversation=conversation,
        text="How do I reset my router?",
        client_id="r1",
        author=customer,
        rate_subject="t",
    )
    waiting = asyncio.ensure_future(
        turns.turn_await(turn_id=received.turn.pk, conversation_id=conversation.pk)
    )
    seen = []
    while not any(f["type"] == "assistant.delta" for f in seen):
        seen.append(await customer_ws.receive_json_from(timeout=5))
    await database_sync_to_async(services.conversation_take_over)(
        conversation=conversation, agent=agent
    )
    scripted.gate.set()
    turn = await waiting
    assert turn.status == "withheld"
    reply = await database_sync_to_async(turn.outputs.get)(role="assistant")
    assert reply.visibility == Message.Visibility.WITHHELD

    while seen[-1]["type"] != "assistant.cancelled":
        seen.append(await customer_ws.receive_json_from(timeout=5))
    assert seen[-1]["reason"] == "agent_took_over"
    assert not [f for f in seen if f["type"] == "message" and f["message"]["role"] == "assistant"]
    assert await customer_ws.receive_nothing(timeout=0.3)
    await customer_ws.disconnect()


async def test_waiting_customer_hears_their_place_in_the_queue_live(
    agent, second_agent, customer, make_user
):
    """Nobody has room: the customer learns their place when the page connects, then
    moves up live as the ticket ahead leaves, then hears who is coming."""
    db = database_sync_to_async

    def escalate(conversation, text):
        from chat.models import Message
        from chat.services import message_append

        message, _ = message_append(
            conversation=conversation, role=Message.Role.CUSTOMER, text=text
        )
        return services.escalation_open(
            conversation=conversation, reason="human_request", trigger_message=message
        )[0]

    await db(services.agent_capacity_set)(agent=agent, capacity=1)
    await db(services.agent_presence_set)(agent=agent, on_duty=True)
    busy = await db(escalate)(await db(ConversationFactory)(customer=customer), "first")
    ahead = await db(escalate)(await db(ConversationFactory)(customer=customer), "second")
    conversation = await db(ConversationFactory)(customer=customer)
    await db(escalate)(conversation, "third")

    customer_ws = socket(f"/ws/chat/{conversation.pk}/", customer)
    assert (await customer_ws.connect())[0]
    place = await frames_until(customer_ws, "queue")
    assert (place["state"], place["position"], place["someone_on_duty"]) == ("queued", 2, True)
    assert place["estimate_minutes"] is None  # no finished tickets to go by yet

    await db(services.ticket_close)(ticket=ahead, outcome="abandoned", agent=second_agent)
    place = await frames_until(customer_ws, "queue")
    assert (place["state"], place["position"]) == ("queued", 1)

    await db(services.ticket_claim)(ticket=busy, agent=agent)
    await db(services.ticket_resolve)(ticket=busy, agent=agent, outcome="approved")
    place = await frames_until(customer_ws, "queue")
    assert place == {
        "type": "queue",
        "state": "assigned",
        "position": None,
        "estimate_minutes": None,
        "estimate_samples": None,
        "someone_on_duty": True,
        "agent_name": "Alex Agent",
    }
    await customer_ws.disconnect()


async def test_inbox_sets_capacity_and_duty_with_a_confirmation(agent):
    inbox = socket("/ws/agent/inbox/", agent)
    assert (await inbox.connect())[0]
    snapshot = await frames_until(inbox, "inbox.snapshot")
    assert snapshot["me"] == {"on_duty": False, "capacity": 3, "load": 0, "supervisor": False}

    await inbox.send_json_to({"type": "capacity", "capacity": 0})
    error = await frames_until(inbox, "error")
    assert error["code"] == "invalid" and "1 to 20" in error["message"]
    await inbox.send_json_to({"type": "capacity", "capacity": "lots"})
    assert (await frames_until(inbox, "error"))["code"] == "invalid"

    await inbox.send_json_to({"type": "capacity", "capacity": 5})
    duty = await frames_until(inbox, "duty")
    assert duty["capacity"] == 5 and duty["message"].startswith("Capacity saved: up to 5")
    await inbox.send_json_to({"type": "duty", "on_duty": True})
    duty = await frames_until(inbox, "duty")
    assert duty["on_duty"] is True and "up to 5 tickets at once" in duty["message"]
    await inbox.disconnect()
