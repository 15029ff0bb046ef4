"""Step Functions: start, the HMAC callback endpoint, SendTaskSuccess/Failure once, retries,
and the shipped ASL definition."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from botocore.stub import ANY, Stubber
from django.urls import reverse
from django_q.models import Schedule

from escalation import services, stepfunctions, tasks
from escalation.api import callback_signature
from escalation.models import WorkflowCallback

pytestmark = pytest.mark.django_db

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:loopdesk-human-review"
SECRET = "callback-secret-for-tests"
TOKEN = "AQCEAAAAKgAAAAMAAAAAAAAAAR1lTaskToken"
ASL = Path(__file__).resolve().parents[2] / "escalation/statemachines/human_review.asl.json"


@pytest.fixture
def sfn(settings):
    settings.STEP_FUNCTIONS_STATE_MACHINE_ARN = ARN
    settings.STEP_FUNCTIONS_CALLBACK_SECRET = SECRET
    stepfunctions.client.cache_clear()
    with Stubber(stepfunctions.client()) as stub:
        yield stub
    stepfunctions.client.cache_clear()


def post_callback(client, payload, *, secret=SECRET, timestamp=None, raw=None):
    body = raw if raw is not None else json.dumps(payload).encode()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return client.post(
        reverse("api:escalation-callback"),
        data=body,
        content_type="application/json",
        HTTP_X_LOOPDESK_TIMESTAMP=ts,
        HTTP_X_LOOPDESK_SIGNATURE=callback_signature(secret=secret, timestamp=ts, body=body),
    )


def test_escalation_starts_an_execution_with_the_withheld_draft(
    sfn, conversation, on_duty, pipeline, monkeypatch, django_capture_on_commit_callbacks
):
    """The workflow starts once the escalated turn's draft is stored, with the draft in
    its input: nothing waits or polls for it."""
    started: list[dict] = []
    real_start = stepfunctions.execution_start

    def spy(*, name, payload):
        started.append(payload)
        return real_start(name=name, payload=payload)

    monkeypatch.setattr(stepfunctions, "execution_start", spy)
    pipeline.bot.answer = "Have you tried turning it off and on?"
    sfn.add_response(
        "start_execution",
        {"executionArn": ARN.replace("stateMachine", "execution") + ":t", "startDate": 0},
        {"stateMachineArn": ARN, "name": ANY, "input": ANY},
    )
    with django_capture_on_commit_callbacks(execute=True):
        turn = pipeline.ask(conversation, "This is useless, talk to a human")

    sfn.assert_no_pending_responses()
    assert turn.status == "escalated"
    ticket = services.escalation_open(conversation=conversation, reason="x")[0]
    assert ticket.workflow_execution_arn.endswith(":t")
    assert ticket.reason in ("anger", "human_request")
    assert started == [
        {
            "ticket_id": ticket.pk,
            "conversation_id": str(conversation.pk),
            "reason": ticket.reason,  # the router's category (anger or a request for a person)
            "reason_detail": turn.decision_detail,
            "priority": "high",
            "customer_message": "This is useless, talk to a human",
            "withheld_draft": "Have you tried turning it off and on?",
            "callback_path": "/api/escalation/callbacks/step-functions/",
        }
    ]


def test_callback_then_resolve_sends_task_success_exactly_once(
    sfn, api_client, escalated, agent, django_capture_on_commit_callbacks
):
    response = post_callback(api_client, {"ticket_id": escalated.pk, "task_token": TOKEN})
    assert response.status_code == 201, response.content
    again = post_callback(api_client, {"ticket_id": escalated.pk, "task_token": TOKEN})
    assert again.status_code == 200 and again.json()["created"] is False

    sfn.add_response("send_task_success", {}, {"taskToken": TOKEN, "output": ANY})
    services.ticket_claim(ticket=escalated, agent=agent)
    with django_capture_on_commit_callbacks(execute=True):
        services.ticket_resolve(ticket=escalated, agent=agent, outcome="approved", note="fine")
    sfn.assert_no_pending_responses()
    callback = WorkflowCallback.objects.get()
    assert callback.state == WorkflowCallback.State.ANSWERED and callback.attempts == 1
    assert callback.output["outcome"] == "approved" and callback.output["note"] == "fine"
    # a redelivered task, or the token posted again, never answers twice
    tasks.workflow_callback_answer_task(callback.pk)
    assert (
        post_callback(api_client, {"ticket_id": escalated.pk, "task_token": TOKEN}).status_code
        == 200
    )
    sfn.assert_no_pending_responses()  # the Stubber would raise on an unexpected call


def test_output_sent_to_step_functions_carries_the_outcome(sfn, escalated, agent):
    services.workflow_callback_register(ticket_id=escalated.pk, task_token=TOKEN)
    services.ticket_resolve(ticket=escalated, agent=agent, outcome="rejected", note="wrong")
    callback = WorkflowCallback.objects.get()
    sent = {}

    def capture(**kwargs):
        sent.update(kwargs)
        return {}

    sfn.deactivate()
    client = stepfunctions.client()
    original = client.send_task_success
    client.send_task_success = capture
    try:
        services.workflow_callback_answer(callback_id=callback.pk)
    finally:
        client.send_task_success = original
    assert sent["taskToken"] == TOKEN
    assert json.loads(sent["output"])["outcome"] == "rejected"


def test_token_arriving_after_resolve_is_answered_at_once(
    sfn, api_client, escalated, agent, django_capture_on_commit_callbacks
):
    services.ticket_resolve(ticket=escalated, agent=agent, outcome="approved")
    sfn.add_response("send_task_success", {}, {"taskToken": TOKEN, "output": ANY})
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            post_callback(api_client, {"ticket_id": escalated.pk, "task_token": TOKEN}).status_code
            == 201
        )
    sfn.assert_no_pending_responses()
    assert WorkflowCallback.objects.get().state == WorkflowCallback.State.ANSWERED


def test_abandoned_ticket_sends_task_failure(
    sfn, escalated, agent, django_capture_on_commit_callbacks
):
    services.workflow_callback_register(ticket_id=escalated.pk, task_token=TOKEN)
    sfn.add_response(
        "send_task_failure", {}, {"taskToken": TOKEN, "error": "TicketAbandoned", "cause": ANY}
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.ticket_close(ticket=escalated, outcome="abandoned", agent=agent)
    sfn.assert_no_pending_responses()
    assert WorkflowCallback.objects.get().state == WorkflowCallback.State.ANSWERED


def test_aws_errors_are_retried_with_backoff_then_answered_once(sfn, escalated, agent, settings):
    services.workflow_callback_register(ticket_id=escalated.pk, task_token=TOKEN)
    services.ticket_resolve(ticket=escalated, agent=agent, outcome="approved")
    callback = WorkflowCallback.objects.get()
    sfn.add_client_error("send_task_success", "ServiceUnavailable", http_status_code=503)
    sfn.add_client_error("send_task_success", "ThrottlingException", http_status_code=400)
    sfn.add_response("send_task_success", {})

    tasks.workflow_callback_answer_task(callback.pk)
    retries = Schedule.objects.filter(func="escalation.tasks.workflow_callback_answer_task")
    assert retries.count() == 1
    first_delay = retries.get().next_run
    tasks.workflow_callback_answer_task(callback.pk)
    assert retries.count() == 2
    assert retries.order_by("-id").first().next_run > first_delay  # backoff grows
    tasks.workflow_callback_answer_task(callback.pk)
    callback.refresh_from_db()
    assert callback.state == WorkflowCallback.State.ANSWERED and callback.attempts == 3
    tasks.workflow_callback_answer_task(callback.pk)  # a stray retry does nothing
    sfn.assert_no_pending_responses()
    assert retries.count() == 2


def test_expired_token_is_not_retried(sfn, escalated, agent):
    services.workflow_callback_register(ticket_id=escalated.pk, task_token=TOKEN)
    services.ticket_resolve(ticket=escalated, agent=agent, outcome="approved")
    sfn.add_client_error("send_task_success", "TaskTimedOut")
    tasks.workflow_callback_answer_task(WorkflowCallback.objects.get().pk)
    assert WorkflowCallback.objects.get().state == WorkflowCallback.State.FAILED
    assert not Schedule.objects.filter(
        func="escalation.tasks.workflow_callback_answer_task"
    ).exists()


def test_gives_up_after_max_attempts(sfn, escalated, agent, settings):
    settings.ESCALATION_RETRY_MAX_ATTEMPTS = 2
    services.workflow_callback_register(ticket_id=escalated.pk, task_token=TOKEN)
    services.ticket_resolve(ticket=escalated, agent=agent, outcome="approved")
    pk = WorkflowCallback.objects.get().pk
    sfn.add_client_error("send_task_success", "ServiceUnavailable", http_status_code=503)
    sfn.add_client_error("send_task_success", "ServiceUnavailable", http_status_code=503)
    tasks.workflow_callback_answer_task(pk)
    tasks.workflow_callback_answer_task(pk)
    callback = WorkflowCallback.objects.get()
    assert (
        callback.state == WorkflowCallback.State.FAILED
        and "ServiceUnavailable" in callback.last_error
    )


# --- bad callback input --------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"task_token": TOKEN}, 400),
        ({"ticket_id": "seven", "task_token": TOKEN}, 400),
        ({"ticket_id": 1, "task_token": ""}, 400),
        ({"ticket_id": 1, "task_token": "has space"}, 400),
        ({"ticket_id": 1, "task_token": "x" * 5000}, 400),
        ([1, 2, 3], 400),
        ({"ticket_id": 999999, "task_token": TOKEN}, 404),
        ({"ticket_id": 10**30, "task_token": TOKEN}, 400),
        ({"ticket_id": 1, "task_token": "tok\u0000en"}, 400),
        ({"ticket_id": 1, "task_token": "tok\ud800en"}, 400),
    ],
)
def test_bad_callback_input_is_rejected(sfn, api_client, payload, status):
    response = post_callback(api_client, payload)
    assert response.status_code == status
    assert set(response.json()) >= {"code", "message"}
    assert not WorkflowCallback.objects.exists()


@pytest.mark.parametrize(
    "timestamp",
    # Headers arrive decoded as latin-1: "\xb2\xb3" is what a client's bytes become.
    ["\u00b2\u00b3", "1" * 5000, "-5", "1e9", "\u00b9" * 3],
)
def test_odd_timestamps_are_refused_before_the_signature_is_checked(sfn, api_client, timestamp):
    """Issue 11 item 8: a superscript or 5,000-digit timestamp was a 500."""
    body = json.dumps({"ticket_id": 1, "task_token": TOKEN}).encode()

    response = api_client.generic(
        "POST",
        reverse("api:escalation-callback"),
        data=body,
        content_type="application/json",
        headers={
            "X-Loopdesk-Timestamp": timestamp,
            "X-Loopdesk-Signature": "sha256=" + "0" * 64,
        },
    )

    assert response.status_code == 401
    assert response.json()["code"] == "unsigned"


def test_a_deeply_nested_signed_body_is_a_400(sfn, api_client):
    response = post_callback(api_client, None, raw=b"[" * 5000 + b"]" * 5000)

    assert response.status_code == 400
    assert response.json()["code"] == "too_deep"


def test_malformed_json_is_rejected(sfn, api_client):
    response = post_callback(api_client, None, raw=b"{not json")
    assert response.status_code == 400 and response.json()["code"] == "malformed_json"


def test_wrong_signature_missing_headers_and_stale_timestamps_are_refused(
    sfn, api_client, escalated
):
    payload = {"ticket_id": escalated.pk, "task_token": TOKEN}
    assert post_callback(api_client, payload, secret="wrong").status_code == 401
    assert post_callback(api_client, payload, timestamp=int(time.time()) - 3600).status_code == 401
    unsigned = api_client.post(reverse("api:escalation-callback"), data=payload, format="json")
    assert unsigned.status_code == 401
    assert not WorkflowCallback.objects.exists()


def test_token_of_another_ticket_conflicts(sfn, api_client, escalated, customer, say):
    from tests.factories import ConversationFactory

    other, _ = services.escalation_open(
        conversation=ConversationFactory(customer=customer), reason="keyword"
    )
    assert (
        post_callback(api_client, {"ticket_id": escalated.pk, "task_token": TOKEN}).status_code
        == 201
    )
    assert (
        post_callback(api_client, {"ticket_id": other.pk, "task_token": TOKEN}).status_code == 409
    )


def test_callbacks_are_refused_when_not_configured(api_client, settings):
    settings.STEP_FUNCTIONS_CALLBACK_SECRET = ""
    response = post_callback(api_client, {"ticket_id": 1, "task_token": TOKEN}, secret="")
    assert response.status_code == 503


# --- the ASL definition ---------------------------------------------------------------


def test_asl_definition_has_notify_wait_for_token_and_choice():
    definition = json.loads(ASL.read_text())
    states = definition["States"]
    assert definition["StartAt"] in states
    # every transition lands on a real state and every path ends
    for name, state in states.items():
        targets = [state.get("Next"), state.get("Default")]
        targets += [c["Next"] for c in state.get("Choices", [])]
        targets += [c["Next"] for c in state.get("Catch", [])]
        for target in filter(None, targets):
            assert target in states, (name, target)
        assert (
            state.get("End") or state.get("Next") or state["Type"] in ("Choice", "Succeed", "Fail")
        ), name
    notify = states[definition["StartAt"]]
    assert notify["Type"] == "Task" and notify["Resource"].startswith("arn:aws:states:::sns")
    wait = states[notify["Next"]]
    assert wait["Resource"].endswith(".waitForTaskToken")
    assert wait["Parameters"]["Payload"]["task_token.$"] == "$$.Task.Token"
    choice = states[wait["Next"]]
    assert choice["Type"] == "Choice"
    assert {c["StringEquals"] for c in choice["Choices"]} == {"approved", "rejected"}
    assert any("States.ALL" in c["ErrorEquals"] for c in wait["Catch"])


def test_asl_definition_is_accepted_by_create_state_machine():
    import boto3
    from moto import mock_aws

    definition = ASL.read_text()
    definition = definition.replace(
        "${NotifyTopicArn}", "arn:aws:sns:us-east-1:123456789012:loopdesk"
    ).replace("${CallbackLambdaArn}", "arn:aws:lambda:us-east-1:123456789012:function:cb")
    with mock_aws():
        client = boto3.client("stepfunctions", region_name="us-east-1")
        created = client.create_state_machine(
            name="loopdesk-human-review",
            definition=definition,
            roleArn="arn:aws:iam::123456789012:role/loopdesk-sfn",
        )
        described = client.describe_state_machine(stateMachineArn=created["stateMachineArn"])
    assert json.loads(described["definition"])["StartAt"] == "NotifyHumanReviewers"


def test_start_for_a_ticket_without_a_turn_does_not_wait(sfn, conversation, say):
    """An agent stepping in or the button: the workflow starts at once, no draft."""
    ticket, _ = services.escalation_open(
        conversation=conversation, reason="agent_takeover", trigger_message=say("hello?")
    )
    sfn.add_response("start_execution", {"executionArn": "arn:y", "startDate": 0})
    assert services.workflow_start(ticket_id=ticket.pk) == "arn:y"
