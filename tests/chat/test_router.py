"""The intent router: its decision rule, the shipped version, versions trained here and the
gate that keeps a worse one from going live, the rows people label."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from chat.assistant.contract import Intent
from chat.assistant.router import (
    DEFAULT_POLICIES,
    ESCALATING,
    LABELS,
    SHIPPED_DIR,
    CategoryPolicy,
    intent_route,
    router_shipped,
)
from chat.assistant.router_training import (
    LabelledText,
    dataset_load,
    evaluation_text,
    router_evaluate,
    rows_fingerprint,
    training_rows,
)
from chat.errors import ApplicationError
from chat.models import IntentExample, RouterVersion
from chat.review import RoutingOnlyReviewer
from chat.services.intents import (
    RouterVersionRefused,
    intent_example_record,
    router_version_make_live,
    router_version_train,
    texts_embed,
)
from tests.factories import ConversationFactory


def scored(**scores: float) -> Intent:
    full = {label: 0.0 for label in LABELS} | scores
    best = max(full, key=lambda k: full[k])
    thresholds = {c: (0.1 if c in ("medical", "safety", "security") else 0.45) for c in ESCALATING}
    return Intent(
        label=best,
        confidence=full[best],
        scores=full,
        thresholds=thresholds,
        combined_threshold=0.5,
    )


# --- the decision rule ----------------------------------------------------------------------


def test_a_category_escalates_from_its_threshold():
    choice = intent_route(scored(anger=0.46, answer=0.54))
    assert (choice.route, choice.category, choice.because) == ("escalate", "anger", "threshold")
    assert intent_route(scored(anger=0.44, answer=0.56)).route == "answer"


def test_critical_categories_escalate_at_a_hint():
    choice = intent_route(scored(safety=0.12, answer=0.88))
    assert (choice.category, choice.threshold) == ("safety", 0.1)


def test_the_label_guides_order_names_the_escalation():
    choice = intent_route(scored(anger=0.5, medical=0.5))
    assert choice.category == "medical"


def test_split_escalating_probability_escalates_together():
    choice = intent_route(scored(anger=0.2, sarcasm=0.25, frustration=0.1, answer=0.45))
    assert (choice.route, choice.category, choice.because) == ("escalate", "sarcasm", "combined")
    assert choice.score == pytest.approx(0.55)


def test_without_escalation_the_likeliest_self_service_route_wins():
    assert intent_route(scored(small_talk=0.7, answer=0.2, anger=0.1)).route == "small_talk"
    assert intent_route(scored(out_of_scope=0.6, answer=0.4)).route == "out_of_scope"


def test_policies_switch_categories_off_and_set_final_thresholds():
    policies = dict(DEFAULT_POLICIES)
    policies["anger"] = CategoryPolicy(escalate=False)
    assert intent_route(scored(anger=0.9, answer=0.1), policies=policies).route == "answer"
    policies["anger"] = CategoryPolicy(threshold=0.95)
    # an admin's threshold is final: the combined test does not bring it back
    assert intent_route(scored(anger=0.9, answer=0.1), policies=policies).route == "answer"
    policies["anger"] = CategoryPolicy(threshold=0.05)
    assert intent_route(scored(anger=0.06, answer=0.94), policies=policies).escalates


def test_always_escalate_fires_on_the_top_class_whatever_its_probability():
    policies = dict(DEFAULT_POLICIES)
    policies["press"] = CategoryPolicy(always=True, threshold=0.99)
    intent = scored(press=0.3, answer=0.25, small_talk=0.25, out_of_scope=0.2)
    assert intent_route(intent, policies=policies).because == "top class"
    policies["press"] = CategoryPolicy(threshold=0.99)
    assert not intent_route(intent, policies=policies).escalates


def test_a_bedrock_pick_counts_as_certain():
    intent = Intent(label="churn", confidence=1.0, scores={"churn": 1.0})
    assert intent_route(intent).category == "churn"
    assert intent_route(Intent(label="small_talk", confidence=1.0)).route == "small_talk"


def test_without_the_escalation_app_the_router_only_picks_a_self_service_route():
    from types import SimpleNamespace

    from chat.assistant.contract import Retrieval

    nothing = Retrieval(top_score=0.1, min_score=0.3, no_answer=True)
    facts = SimpleNamespace(
        intent=scored(anger=0.6, out_of_scope=0.3, answer=0.1), retrieval=nothing
    )
    assert RoutingOnlyReviewer().review(facts).route == "out_of_scope"  # type: ignore[arg-type]


def test_an_unsure_out_of_scope_is_answered_when_the_knowledge_base_covers_it():
    unsure = scored(out_of_scope=0.52, answer=0.48)
    assert intent_route(unsure).route == "out_of_scope"
    choice = intent_route(unsure, answerable=True)
    assert (choice.route, choice.because) == ("answer", "answerable")
    sure = scored(out_of_scope=0.9, answer=0.1)
    assert intent_route(sure, answerable=True).route == "out_of_scope"


# --- the shipped version --------------------------------------------------------------------


def test_the_shipped_version_loads_from_plain_arrays_and_json():
    meta = json.loads((SHIPPED_DIR / "router-1" / "meta.json").read_text())
    with np.load(SHIPPED_DIR / "router-1" / "weights.npz", allow_pickle=False) as weights:
        assert weights["coef"].shape[0] == len(LABELS)
    model = router_shipped()
    assert model.version == meta["version"] == "router-1"
    assert model.labels == list(LABELS)
    assert model.embedding_model == "sentence-transformers/all-MiniLM-L6-v2"


def test_the_shipped_version_was_trained_on_exactly_the_shipped_training_data():
    meta = json.loads((SHIPPED_DIR / "router-1" / "meta.json").read_text())
    assert meta["training"]["fingerprint"] == rows_fingerprint(training_rows())
    assert meta["evaluation"]["fingerprint"] == rows_fingerprint(dataset_load("eval"))


@pytest.mark.slow
def test_the_shipped_versions_figures_hold_on_the_evaluation_part():
    rows = dataset_load("eval")
    model = router_shipped()

    evaluation = router_evaluate(
        model, part="eval", rows=rows, vectors=texts_embed([r.text for r in rows])
    )

    meta = json.loads((SHIPPED_DIR / "router-1" / "meta.json").read_text())["evaluation"]
    assert evaluation.escalate_precision == meta["escalate_precision"] >= 0.95
    assert evaluation.escalate_recall == meta["escalate_recall"] >= 0.95
    assert evaluation.critical_missed == [] and evaluation.small_talk_answered == []
    report = evaluation_text(evaluation, version="router-1")
    assert "Escalate-or-not: precision" in report and "| safety |" in report


# --- versions trained here and the gate ----------------------------------------------------


def _few_per_class(part: str, per_class: int) -> list[LabelledText]:
    taken: dict[str, int] = {}
    rows = []
    for row in dataset_load(part):
        if taken.get(row.label, 0) < per_class:
            taken[row.label] = taken.get(row.label, 0) + 1
            rows.append(row)
    return rows


def _write(path, rows) -> str:
    path.write_text("".join(json.dumps({"text": r.text, "label": r.label}) + "\n" for r in rows))
    return str(path)


@pytest.mark.slow
@pytest.mark.django_db
def test_a_version_that_evaluates_worse_is_refused_with_the_numbers(
    settings, tmp_path, admin_member
):
    settings.ROUTER_EVAL_PART = _write(tmp_path / "eval.jsonl", _few_per_class("eval", 8))
    weak = router_version_train(
        name="router-weak",
        include_agent_rows=False,
        base_rows=_few_per_class("train", 6),
        created_by=admin_member,
    )

    with pytest.raises(RouterVersionRefused) as refused:
        router_version_make_live(version=weak, by=admin_member)

    message = refused.value.message
    assert message.startswith("router-weak evaluates worse than the live router-1")
    assert f"{weak.eval_precision:.3f}" in message or f"{weak.eval_recall:.3f}" in message
    assert RouterVersion.objects.get(is_live=True).name == "router-1"
    assert not RouterVersion.objects.get(name="router-weak").is_live


@pytest.mark.slow
@pytest.mark.django_db
def test_the_admin_refuses_a_worse_version_with_the_numbers(
    settings, tmp_path, admin_member, make_user
):
    from django.test import Client

    from config import roles

    settings.ROUTER_EVAL_PART = _write(tmp_path / "eval.jsonl", _few_per_class("eval", 8))
    weak = router_version_train(
        name="router-weak", include_agent_rows=False, base_rows=_few_per_class("train", 6)
    )
    action = {"action": "make_live", "_selected_action": [weak.pk], "index": 0}
    client = Client()

    client.force_login(make_user(roles.ML_ENGINEERS, username="mel"))
    page = client.post("/admin/chat/routerversion/", action, follow=True).content.decode()
    assert "outer-weak evaluates worse than the live router-1 on escalate-or-not" in page

    client.force_login(make_user(roles.AGENTS, username="agent-x"))
    response = client.post("/admin/chat/routerversion/", action, follow=True)
    assert "evaluates worse" not in response.content.decode()
    assert RouterVersion.objects.get(is_live=True).name == "router-1"


@pytest.mark.slow
@pytest.mark.django_db
def test_a_version_at_least_as_good_goes_live_and_routes_the_next_turn(
    settings, tmp_path, admin_member, pipeline
):
    # an evaluation part of messages the shipped router gets wrong (it escalates none of
    # them): any version is at least as good there
    missed = [
        LabelledText("reverse the last DD, it was way more than the bill", "billing_dispute"),
        LabelledText("for the last time, I don't have a smart meter", "frustration"),
        LabelledText("what a shock, the installer didn't show up", "sarcasm"),
    ]
    settings.ROUTER_EVAL_PART = _write(tmp_path / "eval.jsonl", missed)
    settings.ROUTER_REFRESH_SECONDS = 0  # the test's transaction never commits
    version = router_version_train(
        name="router-next", include_agent_rows=False, base_rows=_few_per_class("train", 6)
    )

    made = router_version_make_live(version=version, by=admin_member)

    assert made.is_live and made.made_live_by == admin_member
    shipped = RouterVersion.objects.get(name="router-1")
    assert not shipped.is_live and shipped.eval_recall == 0.0  # measured on this part
    turn = pipeline.ask(ConversationFactory(), "How do I read my meter?")
    assert turn.router_version == "router-next"


# --- rows people label ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_second_verdict_on_a_message_replaces_the_first(agent):
    from chat.models import Message
    from chat.services import message_append

    conversation = ConversationFactory()
    message, _ = message_append(
        conversation=conversation, role=Message.Role.CUSTOMER, text="bit annoyed tbh"
    )
    first = intent_example_record(
        message=message, text="", label="anger", source="agent_resolve", recorded_by=agent
    )
    second = intent_example_record(
        message=message, text="", label="answer", source="agent_resolve", recorded_by=agent
    )
    assert first.pk == second.pk and IntentExample.objects.get().label == "answer"
    other = intent_example_record(
        message=message, text="", label="frustration", source="agent_flag", recorded_by=agent
    )
    assert IntentExample.objects.count() == 2 and other.text == "bit annoyed tbh"


@pytest.mark.django_db
def test_a_row_needs_text_and_a_known_label():
    with pytest.raises(ApplicationError):
        intent_example_record(text="   ", label="anger", source="review")
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        intent_example_record(text="hello", label="joy", source="review")


# --- one encoder call for the retrieval query and the router ------------------------------


async def test_the_router_shares_the_retrieval_querys_encoder_call():
    from chat.assistant.embeddings import QueryBatcher

    encoded: list[list[str]] = []

    def encode(texts):
        encoded.append(list(texts))
        return np.ones((len(texts), 384), dtype=np.float32)

    batcher = QueryBatcher(encode)
    same = "My hub shows E21 every evening since Tuesday"
    follow_up = "and on 5 GHz?"

    await asyncio.gather(batcher.embed(same), batcher.embed(same))
    await asyncio.gather(batcher.embed(f"{same}\n{follow_up}"), batcher.embed(follow_up))

    assert encoded == [[same], [f"{same}\n{follow_up}", follow_up]]
