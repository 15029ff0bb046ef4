"""The intent router deciding real turns: every destination on fresh messages (written
for these tests, in none of the shipped data sets) through the real pipeline with the
real shipped router (only the answer-writing model is scripted); the safety notice and
priority; the admin's thresholds; agents' verdicts becoming training rows; the reason in
plain words for agents."""

from __future__ import annotations

import pytest
from django.test import Client

from chat.assistant.router_training import dataset_load
from chat.models import Conversation, IntentExample, Message
from escalation import services
from escalation.models import Decision, IntentPolicy, Ticket
from escalation.services.intents import intent_detail
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db

FRESH = {
    "answer": [
        "Can I see last winter's usage side by side with this winter's in the app?",
        "the hub's screen went blank after the firmware update failed, how do I get it back?",
        "No smoke or anything, but the clamp light stopped blinking. Do I change the battery?",
    ],
    "small_talk": [
        "thanks a million, all working now",
        "hiya, how's it going?",
        "ok great, bye for now",
    ],
    "out_of_scope": [
        "Can you recommend a good pizza place in Cork?",
        "write me a python script that sorts a list",
    ],
    "human_request": [
        "put me through to an actual person",
        "get me a manager",
        "can someone from your team call me back about my bill?",
    ],
    "anger": [
        "You lot are an absolute joke, sort my bill out NOW!!!",
        "worst company I've ever dealt with, disgraceful",
    ],
    "sarcasm": [
        "oh fantastic, the app crashed again, love that for me",
        "thanks for nothing, really helpful",
    ],
    "frustration": [
        "you keep giving me the same article, that's not what I asked",
        "this is the fourth time I've contacted you about the same meter reading",
    ],
    "safety": [
        "There's smoke coming out of the Hub on my wall",
        "the fuse box is sparking and smells like burning plastic",
    ],
    "medical": [
        "my toddler just put the clamp battery in her mouth and I think she swallowed it",
        "my dad got a shock off the thermostat wires and collapsed",
    ],
    "security": [
        "someone changed the email on my account and I can't log in",
        "there's a direct debit to Brightwave on my bank statement I never set up",
    ],
    "vulnerable": [
        "the heating's broken and my 3 week old baby is freezing",
        "my husband passed away last month and the account is in his name, I can't afford the bill",
    ],
    "legal": [
        "I've spoken to my solicitor and we'll be issuing court proceedings",
        "I'm reporting you to the energy regulator for this",
    ],
    "press": [
        "I'm a journalist writing about smart thermostat failures, can Brightwave comment?",
        "I'll be posting all of this on TikTok so everyone sees how you treat customers",
    ],
    "billing_dispute": [
        "you've taken 240 pounds instead of 80, I want the difference back today",
        "I was billed twice for March, reverse one of them",
    ],
    "churn": [
        "fix this by Friday or I'm moving to another supplier",
        "that's it, I'm leaving Brightwave, cancel everything",
    ],
}
CASES = [(label, text) for label, texts in FRESH.items() for text in texts]
# Calm questions in the customers' device words (router-1 once sent such questions to a
# person as a safety hazard, or declined them) and hazards about the same devices.
DEVICES = {
    "answer": [
        "the thermostat in the hall lost its wifi connection again overnight",
        "smart plug shows offline but the router is right next to it",
        "my radiator valve won't pair, the light just blinks green",
        "thermostat screen is blank since I changed the batteries",
        "the hub is dead after the storm, no lights at all",
        "meter display stopped showing anything yesterday",
    ],
    "safety": [
        "there's smoke coming out of the smart plug by the TV",
        "the thermostat is too hot to touch and smells like burning",
        "water is dripping onto the smart meter from the flat upstairs",
    ],
    "medical": ["my little boy swallowed one of the radiator valve batteries"],
}
DEVICE_CASES = [(label, text) for label, texts in DEVICES.items() for text in texts]
SELF_SERVICE = {"answer", "small_talk", "out_of_scope"}


def test_the_fresh_messages_are_in_none_of_the_shipped_data_sets():
    shipped = {
        row.text.strip().lower()
        for part in ("train", "eval", "challenge")
        for row in dataset_load(part)
    }
    assert not {text.lower() for _, text in CASES + DEVICE_CASES} & shipped


@pytest.mark.parametrize(("label", "text"), CASES)
def test_each_destination_through_the_real_pipeline(pipeline, label, text):
    conversation = ConversationFactory()

    turn = pipeline.ask(conversation, text)

    assert turn.router_version == "router-1"
    if label in SELF_SERVICE:
        assert (turn.status, turn.route) == ("answered", label)
        reply = turn.outputs.get(role=Message.Role.ASSISTANT)
        assert reply.visibility == "public"
    else:
        assert (turn.status, turn.route, turn.decision_category) == ("escalated", "escalate", label)
        ticket = Ticket.objects.get(conversation=conversation)
        assert ticket.reason == label
        assert Decision.objects.get(turn=turn, rule_kind="intent").outcome == "escalate"


@pytest.mark.parametrize(("label", "text"), DEVICE_CASES)
def test_device_words_alone_do_not_escalate_but_hazards_do(pipeline, label, text):
    conversation = ConversationFactory()

    turn = pipeline.ask(conversation, text)

    if label == "answer":
        assert (turn.status, turn.route) == ("answered", "answer")
        assert not Ticket.objects.filter(conversation=conversation).exists()
    else:
        assert (turn.status, turn.decision_category) == ("escalated", label)
        assert Ticket.objects.get(conversation=conversation).reason == label


def test_a_product_question_the_router_is_unsure_of_is_answered_not_declined(pipeline):
    # the router leans to "out of scope" (0.74); the Wi-Fi article is about the network
    # name (the SSID) the Hub joins
    text = "what's an SSID"
    turn = pipeline.ask(ConversationFactory(), text)
    assert (turn.status, turn.route) == ("answered", "answer")
    routing = Decision.objects.get(turn=turn, rule_kind="intent")
    assert routing.inputs["because"] == "answerable"

    pipeline.bot.passages = []  # nothing in the knowledge base: politely declined
    assert pipeline.ask(ConversationFactory(), text).route == "out_of_scope"


def test_small_talk_gets_a_friendly_reply_never_i_dont_know(conversation, pipeline, monkeypatch):
    from chat import assistant as assistant_api
    from chat.assistant.chain import assistant_stream

    pipeline.bot.passages = []  # nothing in the knowledge base would answer "thanks"
    monkeypatch.setattr(assistant_api, "assistant_stream", assistant_stream)  # real replies

    turn = pipeline.ask(conversation, "thanks a million, all working now")

    reply = turn.outputs.get(role=Message.Role.ASSISTANT).text
    assert turn.route == "small_talk"
    assert "welcome" in reply.lower() and "know" not in reply.lower()


def test_safety_escalates_urgently_with_the_safety_notice_first(conversation, pipeline, on_duty):
    turn = pipeline.ask(conversation, "There's smoke coming out of the Hub on my wall")

    ticket = Ticket.objects.get()
    assert ticket.priority == turn.decision_priority == "urgent"
    assert ticket.reason_detail == "Safety: the customer reports smoke from the Hub."
    notice = turn.outputs.get(role=Message.Role.SYSTEM)
    assert notice.visibility == "public"
    assert notice.text.startswith("For your safety: if you can do so safely, switch the device off")
    assert "999 or 112" in notice.text
    # then the usual promise: a person is coming
    assert notice.text.endswith("your messages here are kept for them.")


def test_medical_escalates_urgently_with_the_emergency_advice(conversation, pipeline):
    turn = pipeline.ask(
        conversation,
        "my toddler just put the clamp battery in her mouth and I think she swallowed it",
    )

    assert (turn.decision_category, turn.decision_priority) == ("medical", "urgent")
    notice = turn.outputs.get(role=Message.Role.SYSTEM).text
    assert notice.startswith("If someone is hurt or unwell, call the emergency services")
    # nobody is on duty: the advice comes first all the same
    assert "No one from our support team is available" in notice
    assert turn.decision_detail == "Medical: the customer reports something swallowed (a child)."


def test_a_request_for_a_person_gets_the_normal_notice(conversation, pipeline, on_duty):
    turn = pipeline.ask(conversation, "put me through to an actual person")

    notice = turn.outputs.get(role=Message.Role.SYSTEM).text
    assert notice.startswith("I'm bringing in a person from our support team.")
    assert turn.decision_priority == "high"


def test_the_customers_notice_is_editable_in_the_admin(conversation, pipeline, admin_member):
    client = Client()
    client.force_login(admin_member)
    policy = IntentPolicy.objects.get(label="safety")
    response = client.post(
        f"/admin/escalation/intentpolicy/{policy.pk}/change/",
        {
            "label": "safety",
            "escalate": "on",
            "always_escalate": "on",
            "threshold": "",
            "ticket_priority": "urgent",
            "customer_notice": "Unplug it and call 112 now.",
        },
    )
    assert response.status_code == 302

    turn = pipeline.ask(conversation, "the fuse box is sparking and smells like burning plastic")

    assert turn.outputs.get(role=Message.Role.SYSTEM).text.startswith(
        "Unplug it and call 112 now.\n\n"
    )


def _admin_changelist_post(client: Client, changes: dict[str, dict[str, str]]) -> None:
    """Edit the intent policies the way the admin's list page does (list_editable)."""
    policies = list(IntentPolicy.objects.order_by("label"))
    data = {
        "form-TOTAL_FORMS": str(len(policies)),
        "form-INITIAL_FORMS": str(len(policies)),
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }
    for i, policy in enumerate(policies):
        row = {
            "id": str(policy.pk),
            "escalate": "on" if policy.escalate else "",
            "always_escalate": "on" if policy.always_escalate else "",
            "threshold": "" if policy.threshold is None else str(policy.threshold),
            "ticket_priority": policy.ticket_priority,
            **changes.get(policy.label, {}),
        }
        for key, value in row.items():
            if value != "":
                data[f"form-{i}-{key}"] = value
    response = client.post("/admin/escalation/intentpolicy/", data)
    assert response.status_code == 302, response.content[:2000]


def test_a_threshold_set_in_the_admin_takes_effect_on_the_next_message(pipeline, admin_member):
    client = Client()
    client.force_login(admin_member)
    first = pipeline.ask(ConversationFactory(), "get me a manager")
    assert first.status == "escalated"

    _admin_changelist_post(client, {"human_request": {"threshold": "1.0"}})
    assert IntentPolicy.objects.get(label="human_request").threshold == 1.0

    second = pipeline.ask(ConversationFactory(), "get me a manager")
    assert second.status == "answered" and second.route in SELF_SERVICE
    routing = Decision.objects.get(turn=second, rule_kind="intent")
    assert routing.outcome == "proceed" and routing.inputs["label"] == "human_request"


def test_a_category_switched_off_in_the_admin_is_answered(pipeline, admin_member):
    client = Client()
    client.force_login(admin_member)
    _admin_changelist_post(client, {"sarcasm": {"escalate": ""}})

    turn = pipeline.ask(
        ConversationFactory(), "oh fantastic, the app crashed again, love that for me"
    )

    assert turn.status == "answered"
    assert not Ticket.objects.exists()


def test_a_lower_threshold_makes_a_category_more_sensitive(pipeline):
    text = "what's the number to ring someone about my account?"
    assert pipeline.ask(ConversationFactory(), text).status == "answered"  # the router's miss
    policy = IntentPolicy.objects.get(label="human_request")
    policy.threshold = 0.1  # the router gives human_request 0.15 here
    services.intent_policy_save(policy=policy)

    turn = pipeline.ask(ConversationFactory(), text)

    assert (turn.status, turn.decision_category) == ("escalated", "human_request")
    decision = Decision.objects.get(turn=turn, rule_kind="intent")
    assert decision.threshold == 0.1 and decision.score >= 0.1


# --- agents teach the router ------------------------------------------------------------------


def _escalated_ticket(pipeline, text: str) -> Ticket:
    conversation = ConversationFactory()
    pipeline.ask(conversation, text)
    return Ticket.objects.get(conversation=conversation)


def test_a_person_was_needed_lands_as_a_training_row(pipeline, agent, api_client):
    ticket = _escalated_ticket(pipeline, "put me through to an actual person")
    api_client.force_authenticate(agent)

    response = api_client.post(
        f"/api/escalation/tickets/{ticket.pk}/resolve/",
        {"outcome": "approved", "person_needed": True},
        format="json",
    )

    assert response.status_code == 200 and response.json()["person_needed"] is True
    example = IntentExample.objects.get()
    assert (example.text, example.label, example.source) == (
        "put me through to an actual person",
        "human_request",
        "agent_resolve",
    )
    assert example.recorded_by == agent and example.message == ticket.trigger_message
    assert (example.router_label, example.router_version) == ("human_request", "router-1")


def test_the_assistant_could_have_answered_lands_as_a_row_of_its_own_class(
    pipeline, agent, api_client
):
    ticket = _escalated_ticket(pipeline, "oh fantastic, the app crashed again, love that for me")
    api_client.force_authenticate(agent)

    response = api_client.post(
        f"/api/escalation/tickets/{ticket.pk}/resolve/",
        {"outcome": "approved", "person_needed": False, "category": "answer"},
        format="json",
    )

    assert response.status_code == 200
    ticket.refresh_from_db()
    assert ticket.person_needed is False
    assert IntentExample.objects.get().label == "answer"


def test_a_person_needed_for_another_category_keeps_the_agents_category(
    pipeline, agent, api_client
):
    ticket = _escalated_ticket(pipeline, "thanks for nothing, really helpful")
    api_client.force_authenticate(agent)
    api_client.post(
        f"/api/escalation/tickets/{ticket.pk}/resolve/",
        {"outcome": "approved", "person_needed": True, "category": "frustration"},
        format="json",
    )
    assert IntentExample.objects.get().label == "frustration"


def test_resolving_without_saying_records_nothing(pipeline, agent, api_client):
    ticket = _escalated_ticket(pipeline, "get me a manager")
    api_client.force_authenticate(agent)
    api_client.post(
        f"/api/escalation/tickets/{ticket.pk}/resolve/", {"outcome": "approved"}, format="json"
    )
    assert not IntentExample.objects.exists()


def test_a_hostile_category_is_refused(pipeline, agent, api_client):
    ticket = _escalated_ticket(pipeline, "get me a manager")
    api_client.force_authenticate(agent)
    response = api_client.post(
        f"/api/escalation/tickets/{ticket.pk}/resolve/",
        {"outcome": "approved", "person_needed": "maybe", "category": "<script>"},
        format="json",
    )
    assert response.status_code == 400
    assert Ticket.objects.get(pk=ticket.pk).is_active


def test_an_agent_flags_a_message_the_assistant_kept(pipeline, agent, api_client):
    conversation = ConversationFactory()
    kept = pipeline.ask(conversation, "How do I read the meter?")
    assert kept.status == "answered"
    api_client.force_authenticate(agent)

    response = api_client.post(
        f"/api/escalation/conversations/{conversation.pk}/flag/",
        {"category": "vulnerable"},
        format="json",
    )

    assert response.status_code == 201
    example = IntentExample.objects.get()
    assert (example.label, example.source, example.message) == (
        "vulnerable",
        "agent_flag",
        kept.customer_message,
    )
    assert response.json() == {
        "example_id": example.pk,
        "category": "vulnerable",
        "message_id": kept.customer_message_id,
    }


def test_flagging_needs_an_agent_and_a_real_category(pipeline, customer, agent, api_client):
    conversation = ConversationFactory()
    pipeline.ask(conversation, "How do I read the meter?")
    url = f"/api/escalation/conversations/{conversation.pk}/flag/"
    api_client.force_authenticate(customer)
    assert api_client.post(url, {"category": "safety"}, format="json").status_code == 403
    api_client.force_authenticate(agent)
    assert api_client.post(url, {"category": "answer"}, format="json").status_code == 400
    assert api_client.post(url, {"category": "safety", "message_id": 10**9}).status_code == 404
    assert not IntentExample.objects.exists()


# --- plain words for agents -------------------------------------------------------------------


def test_the_agent_console_shows_the_reason_in_plain_words(pipeline, agent):
    conversation = ConversationFactory()
    pipeline.ask(conversation, "the fuse box is sparking and smells like burning plastic")
    client = Client()
    client.force_login(agent)

    page = client.get(f"/agent/conversations/{conversation.pk}/").content.decode()

    assert "Safety: the customer reports sparks from the fuse box." in page
    assert "What the message is about" in page


def test_the_turn_summary_agents_receive_names_the_category(pipeline):
    from chat.services import turn_summary

    turn = pipeline.ask(
        ConversationFactory(), "someone changed the email on my account and I can't log in"
    )

    summary = turn_summary(turn)
    assert summary["category"] == "security"
    assert summary["detail"] == (
        "Security: the customer reports an e-mail address changed without them."
    )
    assert summary["intent"]["model_version"] == "router-1"


@pytest.mark.parametrize(
    ("category", "text", "expected"),
    [
        (
            "safety",
            "My thermostat is giving off smoke",
            "Safety: the customer reports smoke from the thermostat.",
        ),
        (
            "safety",
            "I can smell gas near the meter",
            "Safety: the customer reports a smell of gas near the meter.",
        ),
        (
            "billing_dispute",
            "charged twice, refund me",
            "Billing dispute: the customer disputes a double charge.",
        ),
        (
            "anger",
            "You are all useless",
            "Anger: the customer wrote \u201cYou are all useless\u201d.",
        ),
    ],
)
def test_plain_words_come_from_the_message(category, text, expected):
    assert intent_detail(category=category, text=text) == expected


def test_the_bedrock_routers_evidence_is_quoted():
    detail = intent_detail(category="sarcasm", text="oh great", evidence="oh great, another error")
    assert detail == "Sarcasm: the customer wrote \u201coh great, another error\u201d."


def test_handoff_keeps_the_conversation_for_a_person(pipeline):
    conversation = ConversationFactory()
    pipeline.ask(conversation, "There's smoke coming out of the Hub on my wall")
    conversation.refresh_from_db()
    assert conversation.handling == Conversation.Handling.WAITING_FOR_HUMAN
