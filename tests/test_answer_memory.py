"""Answer memory: a reviewer's better answer or an agent's reply, once approved, answers
a later customer who asks the same thing ("From our support team"); unapproved and
revoked answers never do. Everything runs through the real chat pipeline with the
``local`` provider (MiniLM retrieval over the demo articles) and the real labeling and
escalation services."""

from __future__ import annotations

import asyncio

import pytest

from chat.models import Message, SupportAnswer, Turn
from chat.services import SupportAnswerError, message_frame, support_answer_revoke
from config import roles
from escalation import services as escalation
from escalation.models import Ticket
from labeling import services as labeling
from labeling.models import Label
from tests.chat.knowledge_fixtures import knowledge_base  # noqa: F401  (a fixture)
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = "Do you give a discount for students?"
PARAPHRASE = "Is there a student discount?"
BETTER = "No, there is no student discount at Brightwave, but the Flex plan has no exit fees."


@pytest.fixture(autouse=True)
def local_assistant(settings):
    from chat.assistant.memory import memory_forget

    settings.ASSISTANT_PROVIDER = "local"
    settings.KNOWLEDGE_REFRESH_SECONDS = 0  # every turn re-reads the memory's signature
    memory_forget()
    yield
    memory_forget()


def ask(text: str, conversation=None) -> tuple[Turn, Message]:
    """A customer's message through the chat pipeline (stored, its turn claimed and run,
    as the chat socket does); the turn and the public reply."""
    from chat import turns
    from chat.events import db
    from chat.services import customer_message_receive

    conversation = conversation or ConversationFactory()

    async def run() -> Turn:
        received = await db(customer_message_receive)(
            conversation=conversation,
            text=text,
            client_id=f"c-{text[:20]}",
            author=None,
            rate_subject=f"memory-{conversation.pk}",
            claim_owner=turns.process_owner(),
        )
        return await turns.turn_await(
            turn_id=received.turn.pk,
            conversation_id=conversation.pk,
            claimed=received.claimed,
            poll_seconds=0.001,
        )

    turn = asyncio.run(run())
    reply = turn.outputs.get(visibility=Message.Visibility.PUBLIC)
    return turn, reply


def reviewed(reviewer, *, better_answer: str = BETTER) -> Label:
    """The assistant's answer to ``QUESTION`` sampled for review and labelled by
    ``reviewer`` with a better answer."""
    _, reply = ask(QUESTION)
    item = labeling.item_create_from_message(message=reply, reason="random", judge=False)
    label = item.labels.get(reviewer=reviewer)
    return labeling.label_submit(
        label=label, reviewer=reviewer, score=1, better_answer=better_answer
    )


def test_an_approved_better_answer_answers_a_later_paraphrase(knowledge_base, reviewer):  # noqa: F811
    label = reviewed(reviewer)

    remembered = labeling.label_better_answer_approve(label=label, approver=reviewer)
    turn, reply = ask(PARAPHRASE)

    assert turn.status == Turn.Status.ANSWERED and turn.route == Turn.Route.ANSWER
    assert turn.support_answer == remembered
    assert reply.text.startswith(f"From our support team: {BETTER}")
    frame = message_frame(reply, audience="customer")  # what the customer's socket gets
    assert frame["text"].startswith("From our support team:")
    assert frame["sources"][0] == {
        "slug": "",
        "title": "From our support team",
        "score": pytest.approx(frame["sources"][0]["score"]),
        "kind": "answer",
    }
    assert frame["sources"][0]["score"] >= 0.75
    assert (remembered.origin, remembered.origin_ref, remembered.written_by) == (
        SupportAnswer.Origin.REVIEWER,
        f"labeling.Label:{label.pk}",
        reviewer,
    )


def test_an_unapproved_better_answer_is_never_given(knowledge_base, reviewer):  # noqa: F811
    reviewed(reviewer)

    turn, reply = ask(PARAPHRASE)

    assert turn.support_answer is None
    assert BETTER not in reply.text and "From our support team" not in reply.text
    assert all(s.get("kind") != "answer" for s in reply.sources)


def test_a_revoked_answer_is_no_longer_given(knowledge_base, reviewer):  # noqa: F811
    remembered = labeling.label_better_answer_approve(label=reviewed(reviewer), approver=reviewer)
    assert ask(PARAPHRASE)[0].support_answer == remembered

    support_answer_revoke(support_answer=remembered, by=reviewer)
    turn, reply = ask(PARAPHRASE)

    assert turn.support_answer is None
    assert BETTER not in reply.text


def test_a_different_question_does_not_get_the_remembered_answer(knowledge_base, reviewer):  # noqa: F811
    labeling.label_better_answer_approve(label=reviewed(reviewer), approver=reviewer)

    turn, reply = ask("How do I connect my Hub to 5 GHz Wi-Fi?")

    assert turn.support_answer is None
    assert reply.sources[0]["slug"] == "connecting-the-hub-to-wifi"


def test_only_people_allowed_to_approve_can_and_personal_data_never_leaks(
    knowledge_base,  # noqa: F811
    reviewer,
    agent,
):
    label = reviewed(reviewer, better_answer=f"{BETTER} Write to anna.b@example.com for help.")

    with pytest.raises(SupportAnswerError):
        labeling.label_better_answer_approve(label=label, approver=agent)
    assert not SupportAnswer.objects.exists()

    remembered = labeling.label_better_answer_approve(label=label, approver=reviewer)
    _, reply = ask(PARAPHRASE)

    assert "anna.b@example.com" not in remembered.answer
    assert "[EMAIL]" in reply.text and "anna.b@example.com" not in reply.text


def test_an_agents_reply_is_given_only_after_a_reviewer_approves_it(
    knowledge_base,  # noqa: F811
    reviewer,
    agent,
    make_user,
):
    conversation = ConversationFactory()
    ask(QUESTION, conversation)
    escalation.conversation_take_over(conversation=conversation, agent=agent)
    reply_text = "We have no student discount, sorry. The Flex plan has no exit fees though."
    escalation.agent_message_send(conversation=conversation, agent=agent, text=reply_text)
    ticket = Ticket.objects.get(conversation=conversation)
    escalation.ticket_resolve(ticket=ticket, agent=agent, outcome=Ticket.Outcome.APPROVED)

    assert reply_text not in ask(PARAPHRASE)[1].text  # not approved: never quoted

    remembered = escalation.ticket_reply_approve(ticket=ticket, approver=reviewer)
    turn, reply = ask(PARAPHRASE)

    assert turn.support_answer == remembered and remembered.origin == SupportAnswer.Origin.AGENT
    assert reply.text.startswith(f"From our support team: {reply_text}")
    assert roles.REVIEWERS  # reviewers approve; agents cannot (previous test)


def test_the_loop_demo_puts_only_training_questions_in_the_memory(
    knowledge_base,  # noqa: F811
    reviewer,
    admin_member,
):
    """The demo's memory step approves better answers to the training traffic only: a
    held-out question answered and labelled (as if it had leaked into the traffic) stays
    out, so held-out figures never measure a question that is in the memory."""
    from training import loop_demo as demo

    moving = (
        "Tell us you are moving at least 14 days before your moving date, in the app under "
        "Settings > Account > Moving home, or by contacting us."
    )
    train = {"question": "How do I connect my Hub to 5 GHz Wi-Fi?", "article": "moving-house"}
    held = {"question": "Can the hub use a 5GHz network?", "article": "moving-house"}
    for q in (train, held):
        q["evidence"] = moving
    demo.customers_ask([train["question"], held["question"]], label="loop-traffic")
    demo.sample_all()
    both = {demo.normalised(q["question"]): q for q in (train, held)}
    assert demo.labels_simulate(labelled=both)["better_answers"] == 2

    approved = demo.memory_approve(
        approver=admin_member, labelled={demo.normalised(train["question"]): train}
    )

    assert approved == 1
    assert demo.memory_questions() == {demo.normalised(train["question"])}
    row = SupportAnswer.objects.get()
    assert (row.answer, row.article.slug, row.approved_by) == (moving, "moving-house", admin_member)


def test_the_admin_shows_the_provenance_and_revokes(knowledge_base, reviewer, client):  # noqa: F811
    remembered = labeling.label_better_answer_approve(label=reviewed(reviewer), approver=reviewer)
    client.force_login(reviewer)

    page = client.get("/admin/chat/supportanswer/")
    assert page.status_code == 200
    assert QUESTION in page.content.decode() and "robin" in page.content.decode()
    response = client.post(
        "/admin/chat/supportanswer/",
        {"action": "revoke", "_selected_action": [remembered.pk]},
    )

    assert response.status_code == 302
    remembered.refresh_from_db()
    assert (remembered.status, remembered.revoked_by) == (SupportAnswer.Status.REVOKED, reviewer)
    assert BETTER not in ask(PARAPHRASE)[1].text
