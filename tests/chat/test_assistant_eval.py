"""manage.py assistant_eval: the shipped questions through the assistant's retrieval."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from chat.assistant.evaluation import questions_load
from tests.chat.knowledge_fixtures import knowledge_base

__all__ = ["knowledge_base"]

pytestmark = pytest.mark.django_db


def test_shipped_sets_are_separate_and_hold_unanswerable_questions():
    dev, held_out = questions_load("dev"), questions_load("eval")

    assert len(held_out) >= 150 and sum(q["article"] is None for q in held_out) >= 30
    assert not {q["question"] for q in dev} & {q["question"] for q in held_out}


def test_eval_prints_the_rates_and_a_json_line_last(knowledge_base, monkeypatch):
    questions = questions_load("eval")
    sample = [q for q in questions if q["article"]][:12] + [
        q for q in questions if not q["article"]
    ][:4]
    monkeypatch.setattr(
        "chat.management.commands.assistant_eval.questions_load", lambda name: sample
    )
    out = io.StringIO()

    call_command("assistant_eval", "--source", "db", "--failures", "2", stdout=out)

    lines = out.getvalue().strip().splitlines()
    figures = json.loads(lines[-1])
    assert "right article cited first" in out.getvalue()
    assert (figures["set"], figures["answerable"], figures["unanswerable"]) == ("eval", 12, 4)
    assert 0.5 <= figures["right_article_first"] <= 1.0
    assert 0.0 <= figures["honest_dont_know"] <= 1.0
    assert figures["answer_quotes_evidence"] is not None


def test_calibrating_on_the_eval_set_is_refused():
    with pytest.raises(CommandError, match="dev"):
        call_command("assistant_eval", "--set", "eval", "--calibrate", stdout=io.StringIO())
