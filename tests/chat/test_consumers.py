"""The chat WebSocket protocol (docs/chat-protocol.md) on the configured channel layer:
in-memory by default, Redis when REDIS_URL is set."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.db import transaction

from chat import services, turns
from chat.models import Conversation, CustomerFeedback, Message, Turn
from tests.chat.conftest import open_socket, receive_until, session_cookie_for, socket
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def conversation(visitor):
    return ConversationFactory(visitor_id=visitor[0])


def stored(conversation, **filters):
    return list(Message.objects.filter(conversation=conversation, **filters).order_by("seq"))


db = database_sync_to_async


async def send_message(comm, text, client_id):
    await comm.send_json_to({"type": "message", "client_id": client_id, "text": text})


async def test_customer_message_is_acked_streamed_and_answered_with_sources(
    conversation, visitor, scripted, monkeypatch
):
    # The stream comes through the channel layer. A fresh Pub/Sub layer's receiver first
    # polls after 0.1 s, and a turn is faster than that now: the tests' quick catch-up
    # (0.05 s after the turn) would send the stored answer first and end the stream.
    monkeypatch.setattr("chat.consumers.CATCH_UP_DELAY_SECONDS", 1.0)
    comm = await open_socket(conversation.pk, visitor_token=visitor[1])
    await send_message(comm, "How do I reset my password?", "c-1")

    frames = await receive_until(comm, "message", role="assistant")
    await turns.turns_drain()
    await comm.disconnect()

    types = [f["type"] for f in frames]
    ack = frames[types.index("ack")]
    assert ack == {
        "type": "ack",
        "client_id": "c-1",
        "seq": 1,
        "message_id": ack["message_id"],
        "duplicate": False,
    }
    assert "assistant.thinking" in types
    deltas = [f for f in frames if f["type"] == "assistant.delta"]
    assert "".join(d["delta"] for d in deltas) == scripted.answer
    assert {d["reply_to"] for d in deltas} == {1}
    answer = frames[-1]["message"]
    assert answer["text"] == scripted.answer
    assert answer["sources"][0]["slug"] == "reset-password"
    assert answer["reply_to_id"] == ack["message_id"]
    assert "internal" not in answer and "visibility" not in answer  # customers never see them
    # stored: the customer's message, then the public answer with provider/model/latency
    customer_msg, reply = await db(stored)(conversation)
    assert (customer_msg.role, customer_msg.client_id) == ("customer", "c-1")
    assert reply.visibility == "public" and reply.reply_to_id == customer_msg.pk
    assert (reply.provider, reply.model_name) == ("fake", "scripted")
    assert reply.latency_ms is not None
    # the typed turn record behind the answer
    turn = await db(lambda: Turn.objects.get(customer_message=customer_msg))()
    assert (turn.status, turn.route) == ("answered", "answer")
    assert turn.sentiment_method == "vader" and turn.sentiment_label != "negative"
    assert turn.sources[0]["slug"] == "reset-password"
    assert reply.turn_id == turn.pk and turn.owner == turns.process_owner()
    assert turn.started_at <= turn.finished_at and turn.latency_ms is not None
    assert "turn" not in answer  # customers never see the turn


async def test_retried_client_id_creates_one_message_and_one_answer(
    conversation, visitor, scripted
):
    comm = await open_socket(conversation.pk, visitor_token=visitor[1])
    await send_message(comm, "Hello?", "same-id")
    await receive_until(comm, "message", role="assistant")
    await send_message(comm, "Hello?", "same-id")
    ack = (await receive_until(comm, "ack"))[-1]
    await turns.turns_drain()
    await comm.disconnect()

    assert ack["duplicate"] is True and ack["seq"] == 1
    assert [m.role for m in await db(stored)(conversation)] == ["customer", "assistant"]
    assert scripted.questions == ["Hello?"]


async def test_a_message_resent_after_a_reconnect_is_stored_and_answered_once(
    conversation, visitor, scripted
):
    """The new socket knows nothing of the first one's acks: the database finds the
    retry (its client_id is unique in the conversation)."""
    first = await open_socket(conversation.pk, visitor_token=visitor[1])
    await send_message(first, "Hello?", "same-id")
    sent = (await receive_until(first, "ack"))[-1]
    await receive_until(first, "message", role="assistant")
    await first.disconnect()
    second = await open_socket(conversation.pk, visitor_token=visitor[1])
    await send_message(second, "Hello?", "same-id")
    ack = (await receive_until(second, "ack"))[-1]
    await turns.turns_drain()
    await second.disconnect()

    assert sent["duplicate"] is False
    assert ack["duplicate"] is True and ack["message_id"] == sent["message_id"]
    assert [m.role for m in await db(stored)(conversation)] == ["customer", "assistant"]
    assert scripted.questions == ["Hello?"]


async def test_resume_replays_only_public_messages_after_the_last_seen_seq(conversation, visitor):
    def build():
        services.message_append(conversation=conversation, role="customer", text="one")
        services.message_append(conversation=conversation, role="assistant", text="two")
        services.message_append(
            conversation=conversation, role="assistant", text="secret draft", visibility="withheld"
        )
        services.message_append(conversation=conversation, role="system", text="four")

    await db(build)()
    comm = await open_socket(conversation.pk, visitor_token=visitor[1])
    await comm.send_json_to({"type": "resume", "after_seq": 1})
    frames = await receive_until(comm, "replay.done")
    await comm.disconnect()

    replayed = [f["message"] for f in frames if f["type"] == "message"]
    assert [(m["seq"], m["text"]) for m in replayed] == [(2, "two"), (4, "four")]
    assert frames[-1]["last_seq"] == 4


async def test_reconnect_after_missing_an_answer_gets_it_exactly_once(
    conversation, visitor, scripted
):
    comm = await open_socket(conversation.pk, visitor_token=visitor[1])
    await send_message(comm, "Where is my invoice?", "c-9")
    await receive_until(comm, "ack")
    await comm.disconnect()  # gone before the answer arrives
    await turns.turns_drain()

    again = await open_socket(conversation.pk, visitor_token=visitor[1])
    await again.send_json_to({"type": "resume", "after_seq": 1})
    frames = await receive_until(again, "replay.done")
    assert await again.receive_nothing(timeout=0.2)
    await again.disconnect()

    assert [f["message"]["role"] for f in frames if f["type"] == "message"] == ["assistant"]


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "malformed_json"),
        ("[1, 2]", "invalid_frame"),
        ('{"type": "launch_missiles"}', "unknown_type"),
        ('{"type": "message", "client_id": "x1", "text": "   "}', "empty_message"),
        ('{"type": "message", "client_id": "x2"}', "invalid_text"),
        ('{"type": "message", "text": "hi"}', "invalid_client_id"),
        ('{"type": "message", "client_id": ["x3"], "text": "hi"}', "invalid_client_id"),
        ('{"type": "message", "client_id": {"a": 1}, "text": "hi"}', "invalid_client_id"),
        ('{"type": "resume", "after_seq": "ten"}', "invalid_after_seq"),
        ('{"type": "feedback", "score": 9}', "invalid_feedback"),
    ],
)
async def test_bad_frames_get_an_error_store_nothing_and_the_socket_keeps_working(
    conversation, visitor, scripted, raw, code
):
    comm = await open_socket(conversation.pk, visitor_token=visitor[1])
    await comm.send_to(text_data=raw)
    error = await comm.receive_json_from()
    await comm.send_json_to({"type": "ping"})
    pong = await comm.receive_json_from()
    await comm.disconnect()

    assert error["type"] == "error" and error["code"] == code and error["message"]
    assert pong == {"type": "pong"}
    assert await db(stored)(conversation) == []


async def test_oversized_message_is_refused(conversation, visitor, scripted, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 50
    comm = await open_socket(conversation.pk, visitor_token=visitor[1])
    await send_message(comm, "x" * 51, "big")
    error = await comm.receive_json_from()
    await send_message(comm, "x" * 50, "ok")
    ack = (await receive_until(comm, "ack"))[-1]
    await turns.turns_drain()
    await comm.disconnect()

    assert (error["code"], error["client_id"]) == ("message_too_long", "big")
    assert ack["client_id"] == "ok"
    assert [m.client_id for m in await db(stored)(conversation, role="customer")] == ["ok"]


async def test_message_rate_limit_per_visitor(conversation, visitor, scripted, settings):
    settings.CHAT_RATE_LIMIT_MESSAGES = "2/min"
    other = await db(ConversationFactory)(visitor_id=visitor[0])
    comm = await open_socket(conversation.pk, visitor_token=visitor[1])
    for i in range(2):
        await send_message(comm, f"question {i}", f"r{i}")
        await receive_until(comm, "ack")
    await send_message(comm, "question 3", "r3")
    limited = await receive_until(comm, "error")
    await turns.turns_drain()
    await comm.disconnect()
    # the limit is per visitor, not per socket or conversation
    second = await open_socket(other.pk, visitor_token=visitor[1])
    await send_message(second, "elsewhere", "r4")
    limited_again = await receive_until(second, "error")
    await second.disconnect()

    assert limited[-1]["code"] == "rate_limited"
    assert limited_again[-1]["code"] == "rate_limited"
    assert len(await db(stored)(conversation, role="customer")) == 2
    assert await db(stored)(other) == []


async def test_unknown_and_malformed_conversation_ids_close_with_4404(visitor):
    for conversation_id in ["7f1c9a4e-0000-4000-8000-000000000000", "not-a-uuid"]:
        comm = socket(conversation_id, visitor_token=visitor[1])
        connected, _ = await comm.connect()
        assert connected
        assert await comm.receive_output() == {"type": "websocket.close", "code": 4404}
        await comm.disconnect()


async def test_someone_elses_conversation_closes_with_4403(conversation, customer):
    forged = socket(conversation.pk, visitor_token="forged-token")
    await forged.connect()
    assert await forged.receive_output() == {"type": "websocket.close", "code": 4403}
    await forged.disconnect()

    logged_in = socket(conversation.pk, cookie=await db(session_cookie_for)(customer))
    await logged_in.connect()
    assert await logged_in.receive_output() == {"type": "websocket.close", "code": 4403}
    await logged_in.disconnect()


async def test_logged_in_customer_opens_own_conversation(customer, scripted):
    conversation = await db(ConversationFactory)(customer=customer, visitor_id="")
    comm = await open_socket(conversation.pk, cookie=await db(session_cookie_for)(customer))
    await send_message(comm, "Hi there", "u1")
    await receive_until(comm, "message", role="assistant")
    await turns.turns_drain()
    await comm.disconnect()

    customer_msg = (await db(stored)(conversation, role="customer"))[0]
    assert customer_msg.author_id == customer.pk


async def test_provider_error_gives_a_notice_flags_the_conversation_and_keeps_the_message(
    conversation, visitor, scripted
):
    scripted.fail_on_prepare = RuntimeError("Bedrock throttled")
    comm = await open_socket(conversation.pk, visitor_token=visitor[1])
    await send_message(comm, "Is my order shipped?", "f1")
    frames = await receive_until(comm, "message", role="system")
    await turns.turns_drain()
    await comm.disconnect()

    assert "could not answer" in frames[-1]["message"]["text"]
    await db(conversation.refresh_from_db)()
    assert conversation.needs_attention is True
    assert "Bedrock throttled" in conversation.attention_reason
    # the failure is recorded on the turn, and escalation hands the conversation on
    turn = await db(Turn.objects.get)(conversation=conversation)
    assert turn.status == "failed" and turn.error == "RuntimeError: Bedrock throttled"
    assert conversation.handling == "waiting_for_human"
    assert [m.role for m in await db(stored)(conversation, visibility="public")] == [
        "customer",
        "system",
    ]


async def test_failure_mid_stream_cancels_the_partial_answer(conversation, visitor, scripted):
    scripted.answer = "one two three four"
    scripted.word_delay = 0.1  # a model writing slowly: the first words are streamed
    scripted.fail_mid_stream = ConnectionError("stream dropped")
    comm = await open_socket(conversation.pk, visitor_token=visitor[1])
    await send_message(comm, "Tell me", "m1")
    frames = await receive_until(comm, "message", role="system")
    await turns.turns_drain()
    await comm.disconnect()

    types = [f["type"] for f in frames]
    assert "assistant.delta" in types
    assert types.index("assistant.cancelled") < len(types) - 1
    public = await db(stored)(conversation, visibility="public")
    assert [m.role for m in public] == ["customer", "system"]


async def test_timeout_answers_within_the_limit_and_other_conversations_keep_working(
    visitor, scripted, settings
):
    settings.ASSISTANT_TIMEOUT_SECONDS = 0.3
    slow = await db(ConversationFactory)(visitor_id=visitor[0])
    fine = await db(ConversationFactory)(visitor_id=visitor[0])
    original_prepare = scripted.prepare

    async def prepare(*, question, history, adapter_name=""):
        if question == "slow one":
            await asyncio.sleep(3600)
        return await original_prepare(question=question, history=history)

    import chat.assistant

    chat.assistant.assistant_prepare = prepare
    slow_socket = await open_socket(slow.pk, visitor_token=visitor[1])
    fine_socket = await open_socket(fine.pk, visitor_token=visitor[1])
    await send_message(slow_socket, "slow one", "s1")
    await send_message(fine_socket, "quick one", "q1")
    answered = await receive_until(fine_socket, "message", role="assistant")
    notice = await receive_until(slow_socket, "message", role="system", timeout=3)
    await turns.turns_drain()
    await slow_socket.disconnect()
    await fine_socket.disconnect()

    assert answered[-1]["message"]["text"] == scripted.answer
    assert "could not answer" in notice[-1]["message"]["text"]
    await db(slow.refresh_from_db)()
    assert slow.needs_attention and "timeout" in slow.attention_reason
    assert [m.role for m in await db(stored)(slow, visibility="public")] == ["customer", "system"]


async def test_bot_stays_silent_while_an_agent_handles_the_conversation(visitor, scripted):
    conversation = await db(ConversationFactory)(visitor_id=visitor[0], handling="human")
    comm = await open_socket(conversation.pk, visitor_token=visitor[1])
    await send_message(comm, "Are you a human?", "h1")
    await receive_until(comm, "message", role="customer")
    await turns.turns_drain()
    assert await comm.receive_nothing(timeout=0.2)
    await comm.disconnect()

    assert scripted.questions == []
    assert [m.role for m in await db(stored)(conversation)] == ["customer"]


async def test_escalate_verdict_withholds_the_draft_and_shows_the_notice(
    conversation, visitor, scripted, agent
):
    comm = await open_socket(conversation.pk, visitor_token=visitor[1])
    watcher = await open_socket(conversation.pk, cookie=await db(session_cookie_for)(agent))
    await send_message(comm, "This is terrible, the worst service ever, I hate it!!", "e1")
    notice = await receive_until(comm, "message", role="system")
    agent_frames = await receive_until(watcher, "message", role="assistant")
    await turns.turns_drain()
    assert await comm.receive_nothing(timeout=0.2)
    await comm.disconnect()
    await watcher.disconnect()

    assert "person" in notice[-1]["message"]["text"]
    assert not any(f["type"] == "assistant.delta" for f in notice)
    draft = agent_frames[-1]["message"]
    assert draft["visibility"] == "withheld" and draft["text"] == scripted.answer
    assert draft["turn"]["status"] == "escalated"
    assert draft["turn"]["reason"] == "anger"
    assert draft["turn"]["detail"].startswith("Anger: the customer wrote \u201cThis is terrible")
    assert draft["turn"]["intent"]["label"] == "anger"


async def test_block_verdict_generates_no_draft(conversation, visitor, scripted, monkeypatch):
    from chat.review import Verdict
    from escalation.services.decisions import EscalationReviewer

    # Comprehend's harmful band is the only way to block; its client is AWS's.
    monkeypatch.setattr(
        EscalationReviewer,
        "review",
        lambda self, facts: Verdict(route="block", reason="harmful_content", audit=[]),
    )
    monkeypatch.setattr(
        EscalationReviewer,
        "record",
        lambda self, *, turn, verdict: verdict.but(customer_notice="Not here."),
    )
    comm = await open_socket(conversation.pk, visitor_token=visitor[1])
    await send_message(comm, "something harmful", "b1")
    frames = await receive_until(comm, "message", role="system")
    await turns.turns_drain()
    await comm.disconnect()

    assert frames[-1]["message"]["text"] == "Not here."
    assert [m.role for m in await db(stored)(conversation)] == ["customer", "system"]
    assert (await db(Turn.objects.get)(conversation=conversation)).status == "blocked"
    assert scripted.questions == ["something harmful"]  # prepared, but never drafted


async def test_agent_takeover_during_streaming_withholds_the_answer(
    conversation, visitor, scripted, agent
):
    scripted.gate = asyncio.Event()
    comm = await open_socket(conversation.pk, visitor_token=visitor[1])
    await send_message(comm, "How do I submit a meter reading?", "t1")
    await receive_until(comm, "assistant.delta")

    def take_over():
        with transaction.atomic():
            locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
            locked.handling = Conversation.Handling.HUMAN
            locked.assigned_agent = agent
            locked.save(update_fields=["handling", "assigned_agent"])

    await db(take_over)()
    scripted.gate.set()
    frames = await receive_until(comm, "assistant.cancelled")
    await turns.turns_drain()
    assert await comm.receive_nothing(timeout=0.2)
    await comm.disconnect()

    assert frames[-1]["reason"] == "agent_took_over"
    reply = (await db(stored)(conversation, role="assistant"))[0]
    assert reply.visibility == "withheld"


async def test_history_marks_where_the_human_part_began_and_ended(
    conversation, visitor, scripted, agent
):
    def build():
        services.message_append(conversation=conversation, role="customer", text="refund?")
        services.message_append(conversation=conversation, role="agent", text="Done.", author=agent)

    await db(build)()
    comm = await open_socket(conversation.pk, visitor_token=visitor[1])
    await send_message(comm, "thanks, one more thing", "h2")
    await receive_until(comm, "message", role="assistant")
    await turns.turns_drain()
    await comm.disconnect()

    history = scripted.histories[0]
    assert history[0] == {"role": "customer", "text": "refund?"}
    assert history[1]["role"] == "system" and "Alex Agent" in history[1]["text"]
    assert history[2] == {"role": "agent", "text": "Done."}
    assert history[3]["role"] == "system" and "handed the conversation back" in history[3]["text"]


async def test_talk_to_a_person_opens_a_ticket_and_posts_its_notice(
    conversation, visitor, scripted
):
    from escalation.models import Ticket

    comm = await open_socket(conversation.pk, visitor_token=visitor[1])
    await send_message(comm, "my router is broken", "p1")
    await receive_until(comm, "message", role="assistant")
    await comm.send_json_to({"type": "request_human"})
    frames = await receive_until(comm, "message", role="system")
    await turns.turns_drain()
    await comm.disconnect()

    ticket = await db(Ticket.objects.select_related("trigger_message").get)(
        conversation=conversation
    )
    assert ticket.reason == "human_request" and ticket.trigger_message.text == "my router is broken"
    assert "support team" in frames[-1]["message"]["text"]


async def test_agent_typing_reaches_the_customer(conversation, visitor, agent):
    customer_socket = await open_socket(conversation.pk, visitor_token=visitor[1])
    agent_socket = await open_socket(conversation.pk, cookie=await db(session_cookie_for)(agent))
    await agent_socket.send_json_to({"type": "typing", "is_typing": True})
    frame = await customer_socket.receive_json_from()
    assert await agent_socket.receive_nothing(timeout=0.1)  # not echoed to the sender
    await agent_socket.send_json_to({"type": "message", "client_id": "a1", "text": "hi"})
    refused = await agent_socket.receive_json_from()
    await customer_socket.disconnect()
    await agent_socket.disconnect()

    assert frame == {
        "type": "typing",
        "role": "agent",
        "author_name": "Alex Agent",
        "is_typing": True,
    }
    assert refused["code"] == "forbidden"


async def test_end_then_rate_stores_feedback_and_refuses_new_messages(
    conversation, visitor, scripted
):
    comm = await open_socket(conversation.pk, visitor_token=visitor[1])
    await send_message(comm, "How do I pair my speaker?", "z1")
    await receive_until(comm, "message", role="assistant")
    await turns.turns_drain()
    await comm.send_json_to({"type": "end"})
    state = await receive_until(comm, "conversation.state")
    await comm.send_json_to(
        {"type": "feedback", "score": 2, "better_answer": "Hold the button 5s.", "comment": "vague"}
    )
    saved = await receive_until(comm, "feedback.saved")
    await send_message(comm, "one more", "z2")
    refused = await receive_until(comm, "error")
    await comm.disconnect()

    assert state[-1]["status"] == "ended"
    assert saved[-1]["score"] == 2
    feedback = await db(CustomerFeedback.objects.select_related("message").get)(
        conversation=conversation
    )
    assert (feedback.score, feedback.better_answer, feedback.comment) == (
        2,
        "Hold the button 5s.",
        "vague",
    )
    assert feedback.message.role == "assistant"
    assert refused[-1]["code"] == "conversation_ended"


async def test_unknown_group_events_from_other_apps_are_ignored(conversation, visitor):
    from channels.layers import get_channel_layer

    comm = await open_socket(conversation.pk, visitor_token=visitor[1])
    await get_channel_layer().group_send(
        services.conversation_group(conversation.pk), {"type": "chat.something_new", "x": 1}
    )
    await comm.send_json_to({"type": "ping"})
    assert await comm.receive_json_from() == {"type": "pong"}
    await comm.disconnect()


@pytest.mark.parametrize("customer_broadcast_late", [False, True])
async def test_answer_reaches_the_socket_even_if_its_broadcast_is_lost(
    conversation, visitor, scripted, monkeypatch, customer_broadcast_late
):
    """The layer drops the answer's broadcast: the socket's catch-up delivers it, once.
    With the customer's own message's broadcast late as well (a fresh Pub/Sub receiver
    first polls after 0.1 s; a turn can be quicker), the catch-up shows the message and
    its answer in order, and the late broadcast adds nothing, in particular no
    "thinking" under an answered message."""
    from chat import events

    original = events.apublish
    late: list[asyncio.Task] = []

    async def lossy(group, event):
        role = event.get("frame", {}).get("role")
        if role == "customer" and customer_broadcast_late:
            late.append(asyncio.create_task(asyncio.sleep(0.3)))
            late[-1].add_done_callback(
                lambda _: late.append(asyncio.ensure_future(original(group, event)))
            )
        elif role != "assistant":  # the layer drops the answer
            await original(group, event)

    monkeypatch.setattr(events, "apublish", lossy)
    comm = await open_socket(conversation.pk, visitor_token=visitor[1])
    await send_message(comm, "Still there?", "lost-1")
    frames = await receive_until(comm, "message", role="assistant")
    await turns.turns_drain()
    if customer_broadcast_late:
        await asyncio.sleep(0.4)  # the late broadcast has arrived by now
    assert await comm.receive_nothing(timeout=0.2)
    await comm.disconnect()

    messages = [f["message"] for f in frames if f["type"] == "message"]
    answers = [m for m in messages if m["role"] == "assistant"]
    assert len(answers) == 1 and answers[0]["text"] == scripted.answer
    if customer_broadcast_late:
        assert [m["role"] for m in messages] == ["customer", "assistant"]
        assert messages[0]["seq"] < messages[1]["seq"]


@pytest.mark.parametrize(("word_delay", "frames"), [(0.0, 1), (0.08, 4)])
async def test_stream_pieces_are_coalesced_but_a_slow_model_still_streams(
    conversation, visitor, scripted, settings, word_delay, frames
):
    """A quoting provider writes its answer in microseconds: one delta frame, not one per
    word. A model writing a word every 80 ms (window 50 ms) still streams each word."""
    settings.STREAM_COALESCE_SECONDS = 0.05
    words = 30 if not word_delay else 4
    scripted.answer = " ".join(f"w{i}" for i in range(words))
    scripted.word_delay = word_delay
    comm = await open_socket(conversation.pk, visitor_token=visitor[1])
    await send_message(comm, "How do I pair?", "co1")
    seen = await receive_until(comm, "message", role="assistant")
    await turns.turns_drain()
    await comm.disconnect()

    deltas = [f for f in seen if f["type"] == "assistant.delta"]
    assert len(deltas) == frames
    assert [d["index"] for d in deltas] == list(range(frames))
    assert "".join(d["delta"] for d in deltas) == scripted.answer == seen[-1]["message"]["text"]


async def test_a_hand_over_replayed_from_the_database_comes_with_the_new_state_first(
    conversation, visitor, scripted, monkeypatch
):
    """The socket's catch-up read can run ahead of a slow channel layer: when it brings an
    escalation notice, the customer hears that a person now handles the conversation
    before the notice, so the page never shows the notice under a bot that seems to
    answer."""
    from chat import events

    original = events.apublish

    async def slow_layer(group, event):  # every event of the escalated turn is lost
        if event.get("type") == "chat.message" and event["frame"]["role"] == "customer":
            await original(group, event)

    monkeypatch.setattr(events, "apublish", slow_layer)
    comm = await open_socket(conversation.pk, visitor_token=visitor[1])
    await send_message(comm, "This is terrible, the worst service ever, I hate it!!", "h1")
    frames = await receive_until(comm, "message", role="system")
    await turns.turns_drain()
    await comm.disconnect()

    kinds = [
        f["type"] if f["type"] != "message" else f"message:{f['message']['role']}" for f in frames
    ]
    state = kinds.index("conversation.state")
    assert state < kinds.index("message:system")
    assert frames[state]["handling"] == "waiting_for_human"
