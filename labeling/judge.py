"""AI feedback (RLAIF): a judge that scores an assistant answer 1-5 with a comment.

Two methods, chosen by ``settings.LABELING_JUDGE_PROVIDER``:

- ``bedrock``: an LLM on Amazon Bedrock (langchain-aws ``ChatBedrockConverse``) is asked,
  as in the RLAIF blog, to compare the answer with a reference answer where one exists
  and to return a score and a comment.
- ``local`` (default, offline): the MiniLM cosine similarity of the answer to the
  reference (or, without one, to the question), mapped to 1-5. It is a heuristic and is
  labeled as such in ``JudgeResult.method``.

``judge_score`` is the one entry point; training calls it to evaluate answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings

METHOD_BEDROCK = "bedrock"
METHOD_HEURISTIC_REFERENCE = "heuristic:minilm-reference"
METHOD_HEURISTIC_QUESTION = "heuristic:minilm-question"

# Cosine similarity -> score thresholds (score 5 first). An answer is compared with a
# reference answer (paraphrases score high) or, without one, with the question (a good
# answer is topically close but never a paraphrase, so the bar is lower). Calibrated on
# the demo questions: a question and its own reference answer median 0.60, unrelated ~0.2.
_REFERENCE_THRESHOLDS = ((0.80, 5), (0.65, 4), (0.50, 3), (0.35, 2))
_QUESTION_THRESHOLDS = ((0.65, 5), (0.50, 4), (0.35, 3), (0.20, 2))

JUDGE_PROMPT = """You are grading a customer-support assistant's answer.

Question:
{question}

{reference_block}Answer to grade:
{answer}

Score how correct, complete and relevant the answer is on a scale from 1 (wrong or \
irrelevant) to 5 (fully correct and relevant){reference_hint}. Reply in exactly this form:
Score: <1-5>
Comment: <one or two sentences explaining the score>"""


@dataclass(frozen=True)
class JudgeResult:
    score: int
    comment: str
    method: str


class JudgeError(RuntimeError):
    """The judge produced no usable score (e.g. the LLM reply had no score)."""


def judge_score(*, question: str, answer: str, reference: str | None) -> JudgeResult:
    """Score ``answer`` to ``question`` from 1 (worst) to 5 (best) with a comment.

    ``reference`` is a known-good answer (a reference or a reviewer's better answer) or
    None. Raises ``JudgeError`` when the configured judge returns nothing usable.
    """
    provider = settings.LABELING_JUDGE_PROVIDER
    if provider == "bedrock":
        return _judge_bedrock(question=question, answer=answer, reference=reference)
    if provider != "local":
        raise JudgeError(f"unknown LABELING_JUDGE_PROVIDER {provider!r}")
    return _judge_local(question=question, answer=answer, reference=reference)


def judge_scores(cases: list[tuple[str, str, str | None]]) -> list[JudgeResult]:
    """``judge_score`` for many (question, answer, reference) cases at once; the local
    judge embeds them in one batch."""
    if settings.LABELING_JUDGE_PROVIDER != "local":
        return [
            judge_score(question=question, answer=answer, reference=reference)
            for question, answer, reference in cases
        ]
    from chat.assistant.embeddings import embed_texts

    targets = [(reference or "").strip() or question for question, _, reference in cases]
    vectors = embed_texts([answer for _, answer, _ in cases] + targets)
    results = []
    for i, (_question, answer, reference) in enumerate(cases):
        with_reference = bool((reference or "").strip())
        similarity = float(vectors[i] @ vectors[len(cases) + i])
        results.append(
            _heuristic_result(similarity, with_reference=with_reference, empty=not answer.strip())
        )
    return results


def _heuristic_result(similarity: float, *, with_reference: bool, empty: bool) -> JudgeResult:
    method = METHOD_HEURISTIC_REFERENCE if with_reference else METHOD_HEURISTIC_QUESTION
    if empty:
        return JudgeResult(score=1, comment="Heuristic: the answer is empty.", method=method)
    score = similarity_to_score(similarity, with_reference=with_reference)
    against = "the reference answer" if with_reference else "the question"
    return JudgeResult(
        score=score,
        comment=(
            f"Heuristic (MiniLM): semantic similarity {similarity:.2f} to {against}, "
            f"mapped to {score}/5. Not a reading of the answer's correctness."
        ),
        method=method,
    )


def similarity_to_score(similarity: float, *, with_reference: bool) -> int:
    thresholds = _REFERENCE_THRESHOLDS if with_reference else _QUESTION_THRESHOLDS
    for bound, score in thresholds:
        if similarity >= bound:
            return score
    return 1


def _judge_local(*, question: str, answer: str, reference: str | None) -> JudgeResult:
    from chat.assistant.embeddings import embed_texts

    target = (reference or "").strip()
    with_reference = bool(target)
    if not answer.strip():
        return _heuristic_result(0.0, with_reference=with_reference, empty=True)
    vectors = embed_texts([answer, target if with_reference else question])
    similarity = float(vectors[0] @ vectors[1])
    return _heuristic_result(similarity, with_reference=with_reference, empty=False)


def bedrock_runtime_client() -> Any:
    """The boto3 ``bedrock-runtime`` client the judge talks to."""
    import boto3

    return boto3.client("bedrock-runtime", region_name=settings.AWS_REGION)


def bedrock_judge_model() -> Any:
    """The langchain-aws chat model the Bedrock judge uses."""
    from langchain_aws import ChatBedrockConverse

    return ChatBedrockConverse(
        model=settings.LABELING_JUDGE_BEDROCK_MODEL_ID,
        region_name=settings.AWS_REGION,
        temperature=0.0,
        max_tokens=300,
        client=bedrock_runtime_client(),
    )


def judge_prompt(*, question: str, answer: str, reference: str | None) -> str:
    if reference and reference.strip():
        reference_block = f"Reference answer (known to be correct):\n{reference.strip()}\n\n"
        reference_hint = ", comparing it with the reference answer"
    else:
        reference_block, reference_hint = "", ""
    return JUDGE_PROMPT.format(
        question=question.strip(),
        answer=answer.strip(),
        reference_block=reference_block,
        reference_hint=reference_hint,
    )


_SCORE_RE = re.compile(r"score\s*[:=]\s*([1-5](?:\.\d+)?)", re.IGNORECASE)
_COMMENT_RE = re.compile(r"comment\s*[:=]\s*(.+)", re.IGNORECASE | re.DOTALL)


def parse_judge_reply(text: str) -> tuple[int, str]:
    """(score, comment) from 'Score: 4.5\\nComment: ...'; half points round half up."""
    match = _SCORE_RE.search(text)
    if match is None:
        raise JudgeError(f"judge reply has no score: {text[:200]!r}")
    score = min(5, max(1, int(float(match.group(1)) + 0.5)))
    comment_match = _COMMENT_RE.search(text)
    comment = comment_match.group(1).strip() if comment_match else text.strip()
    return score, comment


def _judge_bedrock(*, question: str, answer: str, reference: str | None) -> JudgeResult:
    model = bedrock_judge_model()
    reply = model.invoke(judge_prompt(question=question, answer=answer, reference=reference))
    content = reply.content
    if isinstance(content, list):  # Converse may return content blocks
        content = "".join(
            block.get("text", "") if isinstance(block, dict) else str(block) for block in content
        )
    score, comment = parse_judge_reply(str(content))
    return JudgeResult(score=score, comment=comment, method=METHOD_BEDROCK)


def judge_usable_as_reward() -> bool:
    """True once judge-human agreement reaches ``LABELING_JUDGE_MIN_AGREEMENT``.

    The figure itself (Krippendorff's alpha and the number of items it rests on) is
    ``labeling.selectors.judge_human_agreement()``.
    """
    from labeling.selectors import judge_human_agreement

    return judge_human_agreement().usable
