"""The customer turn is durable: claimed in the database, so two server processes never
run two turns of one conversation at once; a turn whose process died is swept and the
customer told; a late finish from a process thought dead writes nothing."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time

import pytest
from django.db import connection
from django.utils import timezone
from websockets.sync.client import connect

from chat.models import Conversation, Message, Turn
from chat.review import reviewer_current
from chat.services import customer_message_receive
from chat.services.turns import DEAD_OWNER_ERROR, turn_answer_store, turn_claim_next, turns_sweep
from chat.visitors import VISITOR_COOKIE
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db(transaction=True)


def chat_socket(base_url: str, conversation: Conversation, token: str):
    return connect(
        base_url.replace("http", "ws", 1) + f"/ws/chat/{conversation.pk}/",
        origin=base_url,
        additional_headers={"Cookie": f"{VISITOR_COOKIE}={token}"},
        open_timeout=30,
    )


def wait_for(predicate, *, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def later(settings) -> dt.datetime:
    """A moment past every running turn's deadline and the sweep's grace."""
    return timezone.now() + dt.timedelta(
        seconds=settings.ASSISTANT_TIMEOUT_SECONDS + settings.TURN_SWEEP_GRACE_SECONDS + 1
    )


def answer_store(turn: Turn, owner: str, text: str):
    """The pipeline's last step for an answered turn with neutral signals."""
    from chat.assistant.contract import DraftInfo, Prepared, Retrieval, Sentiment
    from chat.review import Verdict

    return turn_answer_store(
        turn=turn,
        owner=owner,
        prepared=Prepared(
            passages=[],
            sentiment=Sentiment(label="neutral", score=0.0, method="vader"),
            retrieval=Retrieval(top_score=0.5, min_score=0.3, no_answer=False),
        ),
        verdict=Verdict(route="answer"),
        text=text,
        info=DraftInfo(provider="local", model_name="x"),
        first_token_ms=1,
        stream_id="s",
    )


def test_two_server_processes_run_one_conversations_turns_one_after_another(
    live_servers, scripted, visitor
):
    scripted.delay = 0.3  # each turn takes a while: overlapping turns would show
    conversation = ConversationFactory(visitor_id=visitor[0])
    url_a, server_a = live_servers.start()
    url_b, server_b = live_servers.start()
    with (
        chat_socket(url_a, conversation, visitor[1]) as first,
        chat_socket(url_b, conversation, visitor[1]) as second,
    ):
        for i, sock in enumerate([first, second, first, second, first, second]):
            sock.send(json.dumps({"type": "message", "client_id": f"m{i}", "text": f"q {i}"}))
        finished = Turn.objects.filter(conversation=conversation, status="answered")
        wait_for(lambda: finished.count() == 6, what="six answered turns")

    turns = list(
        Turn.objects.filter(conversation=conversation)
        .select_related("customer_message")
        .order_by("customer_message__seq")
    )
    # the two servers stored the messages in whatever order they arrived (that is the
    # conversation's order, by seq); every one got a turn
    assert sorted(t.customer_message.text for t in turns) == [f"q {i}" for i in range(6)]
    for earlier, next_turn in itertools.pairwise(turns):
        # one after the other, in the conversation's order: never two running at once
        assert earlier.finished_at <= next_turn.started_at, (earlier, next_turn)
    answers = Message.objects.filter(conversation=conversation, role="assistant")
    assert sorted(answers.values_list("reply_to_id", flat=True)) == sorted(
        t.customer_message_id for t in turns
    )
    # both processes stored messages and ran turns (owners carry the process id)
    assert {server_a.pid, server_b.pid} >= {int(t.owner.split(":")[1]) for t in turns}


def test_a_turn_whose_process_died_is_swept_and_the_customer_told(
    live_servers, scripted, visitor, settings
):
    scripted.hang = True  # the provider never answers: the process dies mid-turn
    conversation = ConversationFactory(visitor_id=visitor[0])
    url, server = live_servers.start()
    with chat_socket(url, conversation, visitor[1]) as sock:
        sock.send(json.dumps({"type": "message", "client_id": "d1", "text": "Hello?"}))
        running = Turn.objects.filter(conversation=conversation, status="running")
        wait_for(running.exists, what="the turn to start")
        server.kill()  # SIGKILL: no cleanup, no notice
        server.join(timeout=10)
    turn = Turn.objects.get(conversation=conversation)
    assert turn.status == "running" and turn.owner.split(":")[1] == str(server.pid)

    assert turns_sweep() == 0  # not yet past its deadline
    assert turns_sweep(now=later(settings)) == 1
    assert turns_sweep(now=later(settings)) == 0  # idempotent

    turn.refresh_from_db()
    conversation.refresh_from_db()
    assert (turn.status, turn.error) == ("failed", DEAD_OWNER_ERROR)
    assert not Turn.objects.filter(status="running").exists()
    notice = turn.outputs.get(role=Message.Role.SYSTEM)
    assert notice.visibility == "public" and notice.marker == Message.Marker.TURN_FAILED
    assert "could not answer" in notice.text
    # flagged and handed to a person (the provider-failure rule opens a ticket)
    assert conversation.needs_attention
    assert conversation.handling == Conversation.Handling.WAITING_FOR_HUMAN
    assert conversation.tickets.get().reason == "provider_failure"


def test_a_late_finish_from_a_process_thought_dead_writes_nothing(visitor, settings):
    conversation = ConversationFactory(visitor_id=visitor[0])
    customer_message_receive(
        conversation=conversation, text="hi", client_id="x1", author=None, rate_subject="t"
    )
    claimed = turn_claim_next(conversation_id=conversation.pk, owner="web-1:4242:aaaa")
    assert turns_sweep(now=later(settings)) == 1

    stored = answer_store(claimed.turn, "web-1:4242:aaaa", "a late answer")
    assert stored is None
    assert not Message.objects.filter(conversation=conversation, role="assistant").exists()
    assert Message.objects.filter(conversation=conversation, marker="turn_failed").count() == 1


def test_a_claimed_turn_is_given_the_conversation_so_far(visitor):
    """The history is read after the claim's transaction: it still holds exactly the
    exchange before the new message, in order."""
    conversation = ConversationFactory(visitor_id=visitor[0])

    def ask(text: str, client_id: str):
        return customer_message_receive(
            conversation=conversation,
            text=text,
            client_id=client_id,
            author=None,
            rate_subject="t",
            claim_owner="web-1:1:aaaa",
        )

    first = ask("How do I reset my password?", "h1")
    assert first.claimed.history == []
    answer_store(first.claimed.turn, "web-1:1:aaaa", "Use the link on the sign-in page.")
    second = ask("And if the link expired?", "h2")
    assert [(m["role"], m["text"]) for m in second.claimed.history] == [
        ("customer", "How do I reset my password?"),
        ("assistant", "Use the link on the sign-in page."),
    ]


def test_a_retried_or_refused_message_takes_no_sequence_number(visitor):
    """The number is taken with the conversation's lock before the insert finds the
    retry: it is given back, so the next message's number follows without a gap, and an
    ended conversation's number does not move either."""
    from chat.services import conversation_end
    from chat.services.conversations import ConversationClosed

    conversation = ConversationFactory(visitor_id=visitor[0])

    def send(client_id: str):
        return customer_message_receive(
            conversation=conversation,
            text="hello",
            client_id=client_id,
            author=None,
            rate_subject="t",
        )

    first = send("r1")
    retry = send("r1")
    second = send("r2")

    assert (retry.created, retry.message.pk) == (False, first.message.pk)
    assert (first.message.seq, second.message.seq) == (1, 2)
    conversation.refresh_from_db()
    assert conversation.last_seq == 2

    conversation_end(conversation=conversation)
    ended = Conversation.objects.get(pk=conversation.pk)
    stored = ended.messages.count()
    assert send("r2").message.pk == second.message.pk  # a retry from before the end
    with pytest.raises(ConversationClosed):
        send("r3")
    conversation.refresh_from_db()
    assert (conversation.last_seq, conversation.updated_at) == (ended.last_seq, ended.updated_at)
    assert conversation.messages.count() == stored


def test_a_late_escalation_from_a_process_thought_dead_opens_no_ticket(visitor, settings):
    """The hand-off store writes the ticket, the audit rows and the notice before it
    finishes the turn; when the sweep failed the turn meanwhile, all of it is undone."""
    from chat.assistant.contract import Intent, Prepared, Retrieval, Sentiment
    from chat.services.turns import turn_handoff_store

    conversation = ConversationFactory(visitor_id=visitor[0])
    customer_message_receive(
        conversation=conversation,
        text="There is smoke coming out of the hub!",
        client_id="x1",
        author=None,
        rate_subject="t",
    )
    claimed = turn_claim_next(conversation_id=conversation.pk, owner="web-1:4242:aaaa")
    prepared = Prepared(
        passages=[],
        sentiment=Sentiment(label="negative", score=-0.8, method="vader"),
        retrieval=Retrieval(top_score=0.2, min_score=0.3, no_answer=True),
        intent=Intent(label="safety", confidence=0.97, scores={"safety": 0.97, "answer": 0.03}),
    )
    verdict = reviewer_current().review(claimed.facts(prepared))
    assert verdict.route == "escalate"  # what the store would record
    assert turns_sweep(now=later(settings)) == 1
    tickets_after_sweep = conversation.tickets.count()

    stored = turn_handoff_store(
        turn=claimed.turn, owner="web-1:4242:aaaa", prepared=prepared, verdict=verdict
    )

    assert stored is None
    assert conversation.tickets.count() == tickets_after_sweep
    assert not Message.objects.filter(conversation=conversation, marker="turn_notice").exists()
    assert Message.objects.filter(conversation=conversation, marker="turn_failed").count() == 1
    assert Turn.objects.get(pk=claimed.turn.pk).status == "failed"


def test_a_pending_turn_nobody_claimed_is_swept_but_not_behind_a_running_one(visitor, settings):
    orphan = ConversationFactory(visitor_id=visitor[0])
    queued = ConversationFactory(visitor_id=visitor[0])
    for conversation, text in ((orphan, "lost?"), (queued, "first"), (queued, "second")):
        customer_message_receive(
            conversation=conversation, text=text, client_id=text, author=None, rate_subject="t"
        )
    # ``queued``'s first turn runs (and is not yet late); its second waits behind it
    turn_claim_next(conversation_id=queued.pk, owner="web-2:1:bbbb")
    now = timezone.now() + dt.timedelta(
        seconds=settings.ASSISTANT_TIMEOUT_SECONDS + settings.TURN_SWEEP_GRACE_SECONDS + 1
    )
    Turn.objects.filter(conversation=queued, status="running").update(
        deadline_at=now + dt.timedelta(seconds=60)
    )

    assert turns_sweep(now=now) == 1
    assert Turn.objects.get(conversation=orphan).status == "failed"
    assert sorted(Turn.objects.filter(conversation=queued).values_list("status", flat=True)) == [
        "pending",
        "running",
    ]


@pytest.mark.django_db(transaction=False)
def test_an_answered_turn_takes_a_fixed_number_of_queries(pipeline, django_assert_num_queries):
    """The statements of a second answered turn, from the stored message to the stored
    answer (SQLite; the test's transaction turns BEGIN/COMMIT into savepoints):
    message: [savepoint] the conversation's lock with the message's number taken and
    whether a turn runs or waits (one UPDATE ... RETURNING; on PostgreSQL the second is
    its own statement, see ``conversation_lock_advancing_with_turns``), the message (an insert that
    skips a retry's duplicate client_id: no lookup first, no savepoint), the turn
    [release], the history with the earlier turns (one read after the commit, outside
    the write lock);
    review: nothing (the rules are this process's copy);
    answer: [savepoint] the conversation's lock with the answer's number taken, the
    decisions, the answer, the turn written only if still running for this process
    [release]; then the harness reads the finished turn (``turn_await``)."""
    conversation = ConversationFactory()
    pipeline.ask(conversation, "How do I reset my password?")  # also loads the rules
    with django_assert_num_queries(13 if connection.vendor == "sqlite" else 14):
        turn = pipeline.ask(conversation, "And how do I change it?")
    assert turn.status == "answered"
