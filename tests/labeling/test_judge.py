"""The AI judge: offline MiniLM heuristic and the Bedrock LLM prompt (botocore Stubber)."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import ANY, Stubber

from labeling import judge

QUESTION = "Does the hub work on 5GHz wifi?"
REFERENCE = (
    "No, the Hub only connects on the 2.4 GHz band. If your router uses one network name "
    "for both bands the Hub picks 2.4 GHz automatically."
)


def test_local_judge_scores_a_paraphrase_of_the_reference_above_an_unrelated_answer():
    good = judge.judge_score(
        question=QUESTION,
        answer="The Hub connects only to 2.4 GHz Wi-Fi, not to the 5 GHz band.",
        reference=REFERENCE,
    )
    bad = judge.judge_score(
        question=QUESTION,
        answer="You can pay your invoice by card or bank transfer in the billing page.",
        reference=REFERENCE,
    )

    assert good.score > bad.score
    assert good.score >= 4
    assert bad.score <= 2
    assert good.method == judge.METHOD_HEURISTIC_REFERENCE
    assert "Heuristic" in good.comment


def test_local_judge_without_reference_compares_with_the_question():
    result = judge.judge_score(
        question=QUESTION,
        answer="Our refund policy covers unopened radiator valves for 30 days.",
        reference=None,
    )

    assert result.method == judge.METHOD_HEURISTIC_QUESTION
    assert 1 <= result.score <= 3


def test_empty_answer_scores_one():
    assert judge.judge_score(question=QUESTION, answer="  ", reference=REFERENCE).score == 1


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("Score: 4.5\nComment: Captures the essence.", 5),
        ("score: 2\ncomment: misses the band", 2),
        ("Score = 3", 3),
    ],
)
def test_parse_judge_reply(reply, score):
    assert judge.parse_judge_reply(reply)[0] == score


def test_parse_judge_reply_without_score_raises():
    with pytest.raises(judge.JudgeError):
        judge.parse_judge_reply("I cannot grade this.")


def test_bedrock_judge_sends_the_reference_to_the_model_and_reads_score_and_comment(
    settings, monkeypatch
):
    settings.LABELING_JUDGE_PROVIDER = "bedrock"
    settings.LABELING_JUDGE_BEDROCK_MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    stubber = Stubber(client)
    stubber.add_response(
        "converse",
        {
            "output": {
                "message": {
                    "role": "assistant",
                    "content": [
                        {"text": "Score: 4\nComment: Matches the reference but omits pairing."}
                    ],
                }
            },
            "stopReason": "end_turn",
            "usage": {"inputTokens": 120, "outputTokens": 20, "totalTokens": 140},
            "metrics": {"latencyMs": 300},
        },
        {
            "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
            "messages": ANY,
            "inferenceConfig": ANY,
            "system": ANY,
        },
    )
    monkeypatch.setattr(judge, "bedrock_runtime_client", lambda: client)
    sent = []
    original = client.converse

    def spy(**kwargs):
        sent.append(kwargs)
        return original(**kwargs)

    with stubber:
        monkeypatch.setattr(client, "converse", spy)
        result = judge.judge_score(question=QUESTION, answer="Only 2.4 GHz.", reference=REFERENCE)

    stubber.assert_no_pending_responses()
    assert result == judge.JudgeResult(
        score=4, comment="Matches the reference but omits pairing.", method="bedrock"
    )
    prompt = sent[0]["messages"][0]["content"][0]["text"]
    assert "Reference answer" in prompt
    assert REFERENCE in prompt
    assert "Only 2.4 GHz." in prompt


def test_batch_judging_gives_the_same_scores_as_one_by_one():
    cases = [
        (QUESTION, "Only the 2.4 GHz band works with the Hub.", REFERENCE),
        (QUESTION, "Invoices are in the billing page.", None),
        (QUESTION, "", REFERENCE),
    ]

    batch = judge.judge_scores(cases)

    single = [judge.judge_score(question=q, answer=a, reference=r) for q, a, r in cases]
    assert [r.score for r in batch] == [r.score for r in single]
    assert [r.method for r in batch] == [r.method for r in single]


@pytest.mark.django_db
def test_a_sampled_item_is_judged_after_commit_and_the_score_stored(
    django_capture_on_commit_callbacks,
):
    from labeling import services
    from labeling.models import LabelingItem
    from tests.labeling.conftest import answered

    reply = answered(QUESTION, "The Hub works only with 2.4 GHz Wi-Fi networks.")

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        item = services.item_create_from_message(message=reply, reason="manual")

    assert len(callbacks) == 1
    item = LabelingItem.objects.get(pk=item.pk)
    assert item.judge_score is not None and 1 <= item.judge_score <= 5
    assert item.judge_method == judge.METHOD_HEURISTIC_QUESTION
    assert item.judged_at is not None and "MiniLM" in item.judge_comment
