"""Before/after evaluation of a run on the snapshot's held-out questions.

Answers come from the training child (base model, then base + adapter); the judge is
``labeling.judge.judge_score`` (an LLM on Bedrock, or the offline MiniLM heuristic), the
RLAIF blog's "mean AI score" and "share of answers above 3".
"""

from __future__ import annotations

from statistics import mean
from typing import Any


def _judge(*, question: str, answer: str, reference: str) -> tuple[float, str, str]:
    from labeling.judge import judge_score  # imported lazily: the labeling app owns it

    verdict = judge_score(question=question, answer=answer, reference=reference or None)
    return float(verdict.score), verdict.comment, verdict.method


def _summary(scores: list[float]) -> dict[str, float | None]:
    if not scores:
        return {"mean": None, "share_above_3": None}
    return {
        "mean": round(mean(scores), 3),
        "share_above_3": round(sum(s > 3 for s in scores) / len(scores), 3),
    }


def evaluation_build(*, result: dict[str, Any]) -> dict[str, Any]:
    """Judge scores before and after plus the side-by-side rows."""
    evaluation: dict[str, Any] = {}
    summary = result.get("summary", {})
    if summary.get("pair_accuracy") is not None:
        evaluation["pair_accuracy"] = summary["pair_accuracy"]
    answers = result.get("answers") or []
    if not answers:
        return evaluation
    rows = []
    method = ""
    for item in answers:
        before, before_comment, method = _judge(
            question=item["prompt"], answer=item["before"], reference=item["reference"]
        )
        after, after_comment, method = _judge(
            question=item["prompt"], answer=item["after"], reference=item["reference"]
        )
        rows.append(
            {
                **item,
                "before_score": before,
                "after_score": after,
                "before_comment": before_comment,
                "after_comment": after_comment,
            }
        )
    evaluation.update(
        {
            "method": method,
            "questions": len(rows),
            "before": _summary([r["before_score"] for r in rows]),
            "after": _summary([r["after_score"] for r in rows]),
            "rows": rows,
        }
    )
    return evaluation
