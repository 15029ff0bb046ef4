"""The decision workflow: every rule and band, the audit trail, the verdicts."""

from __future__ import annotations

import pytest
from botocore.stub import Stubber

from chat.models import Conversation
from escalation import comprehend, services
from escalation.models import Decision, DomainEvent, EscalationRule, Ticket
from tests.escalation.conftest import signals

pytestmark = pytest.mark.django_db


def rule(kind: str) -> EscalationRule:
    return EscalationRule.objects.get(kind=kind)


def test_default_rules_are_seeded():
    kinds = set(EscalationRule.objects.values_list("kind", flat=True))
    assert kinds == set(EscalationRule.Kind.values)


def test_calm_message_proceeds_and_every_rule_is_audited(conversation, say):
    message = say("How do I change my billing address?")
    verdict = services.turn_review(
        conversation=conversation, customer_message=message, signals=signals(compound=0.2)
    )
    assert not verdict.escalate and not verdict.block
    decisions = Decision.objects.filter(message=message)
    # toxicity is skipped without Comprehend; provider failure is decided elsewhere
    assert set(decisions.values_list("rule_kind", flat=True)) == {
        "human_request",
        "keyword",
        "negative_sentiment",
        "repeated_no_answer",
    }
    assert set(decisions.values_list("outcome", flat=True)) == {"proceed"}
    sentiment = decisions.get(rule_kind="negative_sentiment")
    assert sentiment.score == 0.2 and sentiment.threshold == -0.5
    assert sentiment.inputs["sentiment"]["method"] == "vader"
    conversation.refresh_from_db()
    assert conversation.handling == Conversation.Handling.ASSISTANT
    assert not Ticket.objects.exists()


def test_vader_negative_sentiment_escalates_at_threshold(conversation, say, on_duty):
    message = say("This is awful, I am furious")
    verdict = services.turn_review(
        conversation=conversation, customer_message=message, signals=signals(compound=-0.5)
    )
    assert verdict.escalate and not verdict.block
    assert verdict.reason == "negative_sentiment"
    assert "person" in verdict.customer_notice
    ticket = Ticket.objects.get(pk=verdict.details["ticket_id"])
    assert ticket.status == Ticket.Status.OPEN and ticket.priority == "high"
    assert ticket.sentiment == {"label": "negative", "score": -0.5, "method": "vader"}
    assert ticket.trigger_message == message
    decision = Decision.objects.get(message=message, rule_kind="negative_sentiment")
    assert (decision.outcome, decision.score, decision.threshold) == ("escalate", -0.5, -0.5)
    assert ticket.decision == decision
    conversation.refresh_from_db()
    assert conversation.handling == Conversation.Handling.WAITING_FOR_HUMAN
    assert DomainEvent.objects.filter(name="ESCALATION_CREATED", ticket=ticket).exists()


def test_vader_threshold_is_configurable(conversation, say):
    EscalationRule.objects.filter(kind="negative_sentiment").update(threshold=-0.8)
    message = say("This is bad")
    verdict = services.turn_review(
        conversation=conversation, customer_message=message, signals=signals(compound=-0.6)
    )
    assert not verdict.escalate


def test_disabled_rule_is_not_evaluated(conversation, say):
    EscalationRule.objects.filter(kind="negative_sentiment").update(enabled=False)
    message = say("Terrible")
    verdict = services.turn_review(
        conversation=conversation, customer_message=message, signals=signals(compound=-0.9)
    )
    assert not verdict.escalate
    assert not Decision.objects.filter(rule_kind="negative_sentiment").exists()


@pytest.mark.parametrize(("negative", "escalates"), [(1, True), (0, False)])
def test_bedrock_sentiment_uses_the_blogs_zero_one(conversation, say, negative, escalates):
    message = say("whatever")
    verdict = services.turn_review(
        conversation=conversation,
        customer_message=message,
        signals=signals(method="bedrock", negative=negative, compound=0.0),
    )
    assert verdict.escalate is escalates
    decision = Decision.objects.get(message=message, rule_kind="negative_sentiment")
    assert decision.score == float(negative) and decision.threshold == 1.0


@pytest.mark.parametrize(
    "text",
    ["Can I talk to a human please?", "I want to speak with someone", "get me a REAL PERSON"],
)
def test_asking_for_a_person_in_words_escalates(conversation, say, text):
    message = say(text)
    verdict = services.turn_review(
        conversation=conversation, customer_message=message, signals=signals()
    )
    assert verdict.escalate and verdict.reason == "human_request"


def test_button_always_escalates_even_when_the_rule_is_disabled(conversation, say):
    EscalationRule.objects.filter(kind="human_request").update(enabled=False)
    message = say("hello")
    verdict = services.escalation_request_human(conversation=conversation, customer_message=message)
    assert verdict.escalate
    decision = Decision.objects.get(pk=verdict.details["decision_id"])
    assert decision.inputs == {"source": "button"} and decision.outcome == "escalate"


def test_organisation_keywords_escalate_urgently(conversation, say):
    message = say("My lawyer will hear about this")
    verdict = services.turn_review(
        conversation=conversation, customer_message=message, signals=signals()
    )
    assert verdict.reason == "keyword"
    assert Ticket.objects.get().priority == "urgent"


def test_keyword_matches_whole_words_only(conversation, say):
    EscalationRule.objects.create(name="Refunds", kind="keyword", patterns="refund", priority=5)
    message = say("refundable tickets?")
    verdict = services.turn_review(
        conversation=conversation, customer_message=message, signals=signals()
    )
    assert not verdict.escalate


def test_lowest_priority_number_names_the_reason(conversation, say):
    message = say("I hate this, let me talk to a human")
    verdict = services.turn_review(
        conversation=conversation, customer_message=message, signals=signals(compound=-0.9)
    )
    assert verdict.reason == "human_request"  # priority 20 beats sentiment's 40
    assert Decision.objects.filter(message=message, outcome="escalate").count() == 2


def test_repeated_no_answer_escalates_after_n_turns_in_a_row(conversation, say):
    first = services.turn_review(
        conversation=conversation, customer_message=say("a?"), signals=signals(no_answer=True)
    )
    answered = services.turn_review(
        conversation=conversation, customer_message=say("b?"), signals=signals(no_answer=False)
    )
    second = services.turn_review(
        conversation=conversation, customer_message=say("c?"), signals=signals(no_answer=True)
    )
    assert not (first.escalate or answered.escalate or second.escalate)
    third = services.turn_review(
        conversation=conversation, customer_message=say("d?"), signals=signals(no_answer=True)
    )
    assert third.escalate and third.reason == "repeated_no_answer"
    decision = Decision.objects.get(pk=third.details["decision_id"])
    assert (decision.score, decision.threshold) == (2.0, 2.0)


def test_provider_failure_escalates_and_records_the_event(conversation, say):
    message = say("hello?")
    verdict = services.turn_failed(
        conversation=conversation, customer_message=message, error="ThrottlingException"
    )
    assert verdict.escalate and verdict.reason == "provider_failure"
    assert DomainEvent.objects.filter(name="RESPONSE_GENERATION_FAILED").count() == 1
    assert Ticket.objects.get().reason == "provider_failure"


def test_provider_failure_rule_disabled_records_event_only(conversation, say):
    EscalationRule.objects.filter(kind="provider_failure").update(enabled=False)
    verdict = services.turn_failed(
        conversation=conversation, customer_message=say("hi"), error="boom"
    )
    assert not verdict.escalate
    assert DomainEvent.objects.filter(name="RESPONSE_GENERATION_FAILED").exists()
    assert not Ticket.objects.exists()


def test_while_a_person_handles_the_assistant_may_not_draft(escalated, conversation, say):
    verdict = services.turn_review(
        conversation=conversation, customer_message=say("still there?"), signals=signals()
    )
    assert verdict.escalate and verdict.reason == "with_human"
    assert (
        verdict.customer_notice
        == "A person from our support team is handling this conversation now."
    )
    assert Ticket.objects.count() == 1


def test_nobody_on_duty_tells_the_customer_honestly(conversation, say):
    verdict = services.escalation_request_human(
        conversation=conversation, customer_message=say("help")
    )
    assert "No one from our support team is available" in verdict.customer_notice
    assert Ticket.objects.get().nobody_available
    assert Ticket.objects.get().status == Ticket.Status.OPEN


# --- toxicity bands (Comprehend DetectToxicContent through a Stubber) ---------------------


@pytest.fixture
def comprehend_stub(settings):
    settings.USE_COMPREHEND = True
    comprehend.client.cache_clear()
    client = comprehend.client()
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()
    comprehend.client.cache_clear()


def toxic_response(score: float) -> dict:
    return {
        "ResultList": [
            {"Labels": [{"Name": "INSULT", "Score": score}], "Toxicity": score},
        ]
    }


@pytest.mark.parametrize(
    ("toxicity", "expected"),
    [(0.0, "proceed"), (0.39, "proceed"), (0.4, "hold"), (0.6, "hold"), (0.61, "block")],
)
def test_toxicity_band_edges(toxicity, expected):
    assert services.toxicity_band(toxicity=toxicity, hold=0.4, harmful=0.6) == expected


def test_low_toxicity_proceeds(conversation, say, comprehend_stub):
    comprehend_stub.add_response(
        "detect_toxic_content",
        toxic_response(0.1),
        {"TextSegments": [{"Text": "hello there"}], "LanguageCode": "en"},
    )
    verdict = services.turn_review(
        conversation=conversation, customer_message=say("hello there"), signals=signals()
    )
    assert not verdict.escalate and not verdict.block
    assert Decision.objects.get(rule_kind="toxicity").outcome == "proceed"


def test_middle_band_holds_for_human_review(conversation, say, comprehend_stub):
    comprehend_stub.add_response("detect_toxic_content", toxic_response(0.5))
    verdict = services.turn_review(
        conversation=conversation, customer_message=say("you are useless"), signals=signals()
    )
    assert verdict.escalate and not verdict.block and verdict.reason == "toxicity"
    decision = Decision.objects.get(rule_kind="toxicity")
    assert (decision.outcome, decision.score, decision.threshold) == ("hold", 0.5, 0.4)
    assert DomainEvent.objects.filter(name="HUMAN_REVIEW_REQUESTED").exists()


def test_harmful_content_is_blocked(conversation, say, comprehend_stub):
    comprehend_stub.add_response("detect_toxic_content", toxic_response(0.9))
    verdict = services.turn_review(
        conversation=conversation, customer_message=say("something vile"), signals=signals()
    )
    assert verdict.block and not verdict.escalate and verdict.reason == "harmful_content"
    assert verdict.customer_notice
    event = DomainEvent.objects.get(name="HARMFUL_CONTENT_DETECTED")
    assert event.payload["toxicity"] == 0.9
    assert Decision.objects.get(rule_kind="toxicity").outcome == "block"
    conversation.refresh_from_db()
    assert conversation.handling == Conversation.Handling.ASSISTANT


def test_comprehend_failure_is_audited_and_does_not_stop_the_turn(
    conversation, say, comprehend_stub
):
    comprehend_stub.add_client_error("detect_toxic_content", "ThrottlingException")
    verdict = services.turn_review(
        conversation=conversation, customer_message=say("hi"), signals=signals()
    )
    assert not verdict.block and not verdict.escalate
    assert Decision.objects.get(rule_kind="toxicity").outcome == "error"


def test_rule_validation_rejects_bad_bands_and_regexes():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        EscalationRule(name="x", kind="toxicity", threshold=0.7, upper_threshold=0.5).full_clean()
    with pytest.raises(ValidationError):
        EscalationRule(name="y", kind="keyword", patterns="re:(unclosed").full_clean()
