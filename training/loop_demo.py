"""The learning loop end to end, offline, on the shipped question sets (``manage.py
loop_demo``).

1. Simulated customer traffic: the training questions (``questions_train.jsonl``) go
   through the real chat pipeline (``customer_message_receive`` and the turn runner, as
   the chat socket does), one conversation each.
2. Sampling: a sampling policy that takes every answer sends them to reviewers.
3. Demo reviewers' labels, SIMULATED: a reviewer rates an answer 5 when it cites the
   question's labelled article first (or honestly says "I don't know" to a question the
   help centre cannot answer) and 1 otherwise, and for a wrong answer writes a better one
   by quoting the right article (the question's evidence sentence). Real reviewers are
   noisier; the loop is the same.
4. A dataset snapshot of the consolidated labels.
5. A retriever-adapter run on the training cluster's code path (``run_execute``: the
   supervised child process), run inline here; its evaluation on the snapshot's
   held-out questions.
6. Approval, and deployment through the deployment gate.
7. The held-out questions (``questions_eval.jsonl``, never in any training row) asked
   through the chat pipeline before step 5 and again after step 6.
8. Answer memory: the demo admin approves the simulated reviewers' better answers (one
   per answer reviewed; an "I don't know" is not an answer to remember), and the
   held-out questions are asked a third time: a held-out question that asks what a
   training question asked gets the approved answer, "From our support team".
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import mean
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q

from chat.assistant.chain import NO_ANSWER_TEXT
from chat.assistant.evaluation import questions_load
from chat.models import Article, Conversation, Message, SupportAnswer
from labeling.models import DatasetSnapshot, Label, LabelingItem, SamplingPolicy

POLICY_NAME = "Loop demo: every answer"
SNAPSHOT_NAME = "loop-demo"
SNAPSHOT_TEST_SHARE = 0.15
SIMULATED_REVIEWER_NOTE = (
    "demo reviewers are SIMULATED: an answer citing the question's labelled article first "
    '(or an honest "I don\'t know" to a question the articles cannot answer) gets 5, any '
    "other gets 1 with a better answer quoting the right article (the dataset's evidence "
    "sentence)"
)


def normalised(text: str) -> str:
    return " ".join(text.lower().split())


@dataclass
class Asked:
    question: str
    want: str | None
    status: str
    cited_first: str | None
    answer: str
    score: float = 0.0
    from_memory: bool = False


@dataclass
class PassFigures:
    asked: list[Asked] = field(default_factory=list)

    @property
    def answerable(self) -> list[Asked]:
        return [a for a in self.asked if a.want]

    def right_article_first(self) -> float:
        rows = self.answerable
        return sum(a.cited_first == a.want for a in rows) / max(len(rows), 1)

    def honest_dont_know(self) -> float:
        rows = [a for a in self.asked if not a.want]
        return sum(a.cited_first is None for a in rows) / max(len(rows), 1)

    def judge_mean(self) -> float:
        return mean(a.score for a in self.asked) if self.asked else 0.0

    def share_above_3(self) -> float:
        return sum(a.score > 3 for a in self.asked) / max(len(self.asked), 1)

    def from_memory(self) -> list[Asked]:
        return [a for a in self.asked if a.from_memory]


# The first citation of an answer from the team that concerns no article.
SUPPORT_TEAM_ONLY = "(support team)"


def _asked_turn(conversation: Conversation, text: str) -> tuple[str, str | None, str, bool]:
    """(turn status, first cited article, answer text, answered from the answer memory)
    of the conversation's first turn."""
    turn = conversation.turns.order_by("pk").first()
    reply = (
        Message.objects.filter(conversation=conversation, role=Message.Role.ASSISTANT)
        .order_by("pk")
        .first()
    )
    sources = reply.sources if reply is not None else []
    from_memory = bool(turn is not None and turn.support_answer_id)
    cited = (
        (sources[0]["slug"] or (SUPPORT_TEAM_ONLY if from_memory else None)) if sources else None
    )
    return (
        turn.status if turn is not None else "none",
        cited,
        reply.text if reply is not None else "",
        from_memory,
    )


def customers_ask(
    questions: list[str], *, label: str, progress: Callable[[int], None] | None = None
) -> list[tuple[str, str | None, str, bool]]:
    """Each question from a new customer, through the real chat pipeline (the chat
    socket's path: store the message and claim its turn, then run it); returns (status,
    first cited article, answer, from the answer memory) per question."""
    from chat import services, turns
    from chat.events import db

    async def ask_all() -> list[tuple[str, str | None, str, bool]]:
        out = []
        for i, text in enumerate(questions):
            conversation = await db(Conversation.objects.create)(
                visitor_id=f"{label}-{uuid.uuid4().hex[:12]}"
            )
            received = await db(services.customer_message_receive)(
                conversation=conversation,
                text=text,
                client_id=uuid.uuid4().hex,
                author=None,
                rate_subject=f"{label}-{conversation.pk}",
                claim_owner=turns.process_owner(),
            )
            await turns.turn_await(
                turn_id=received.turn.pk,
                conversation_id=conversation.pk,
                claimed=received.claimed,
                poll_seconds=0.001,
            )
            out.append(await db(_asked_turn)(conversation, text))
            if progress is not None and (i + 1) % 50 == 0:
                progress(i + 1)
        return out

    return asyncio.run(ask_all())


def ask_pass(questions: list[dict[str, Any]], *, label: str, progress=None) -> PassFigures:
    """The questions through the chat pipeline, judged against their reference answer
    (for questions the articles cannot answer: the honest "I don't know" reply)."""
    from labeling.judge import judge_score

    results = customers_ask([q["question"] for q in questions], label=label, progress=progress)
    figures = PassFigures()
    for q, (status, cited, answer, from_memory) in zip(questions, results, strict=True):
        reference = q.get("reference_answer") or (None if q.get("article") else NO_ANSWER_TEXT)
        verdict = judge_score(
            question=q["question"], answer=answer or NO_ANSWER_TEXT, reference=reference
        )
        figures.asked.append(
            Asked(
                question=q["question"],
                want=q.get("article"),
                status=status,
                cited_first=cited,
                answer=answer,
                score=float(verdict.score),
                from_memory=from_memory,
            )
        )
    return figures


def sample_all() -> int:
    """Every unsampled answer to reviewers (a policy with random share 1)."""
    from labeling.services.sampling import sampling_policy_run

    policy, _ = SamplingPolicy.objects.get_or_create(
        name=POLICY_NAME,
        defaults={
            "random_share": 1.0,
            "include_escalated": False,
            "include_negative": False,
            "low_rating_max": None,
            "daily_cap": 100_000,
        },
    )
    return sampling_policy_run(policy=policy).created


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def simulated_review(
    *, item: LabelingItem, labelled: dict[str, dict[str, Any]]
) -> tuple[int, str] | None:
    """(score, better answer) the simulated reviewer gives, or None for an answer to a
    question it has no label for (left for real reviewers)."""
    question = labelled.get(normalised(item.question))
    if question is None:
        return None
    cited = [s.get("slug") for s in (item.context or []) if isinstance(s, dict)]
    want = question.get("article")
    if want is None:
        return (5, "") if not cited else (1, NO_ANSWER_TEXT)
    if cited and cited[0] == want:
        return 5, ""
    better = question.get("evidence") or ""
    if not better:
        article = Article.objects.filter(slug=want).first()
        better = _SENTENCE.split(article.body.strip())[0] if article else ""
    return 1, better


def labels_simulate(*, labelled: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Every open label of the demo's sampled answers, submitted by its reviewer with
    the simulated reviewer's score and better answer."""
    from labeling.services.labels import label_submit

    counts = {"labels": 0, "items": 0, "better_answers": 0}
    items = LabelingItem.objects.filter(batch__policy__name=POLICY_NAME)
    for item in items.prefetch_related("labels"):
        review = simulated_review(item=item, labelled=labelled)
        if review is None:
            continue
        score, better = review
        counts["items"] += 1
        counts["better_answers"] += bool(better)
        for label in item.labels.filter(status=Label.Status.ASSIGNED).select_related("reviewer"):
            if label.reviewer is None:
                continue
            label_submit(
                label=label,
                reviewer=label.reviewer,
                score=score,
                better_answer=better,
                comment="simulated demo reviewer",
            )
            counts["labels"] += 1
    return counts


def snapshot_freeze() -> DatasetSnapshot:
    from labeling.services.snapshots import snapshot_create_from_labels

    return snapshot_create_from_labels(
        name=SNAPSHOT_NAME,
        filters={},
        test_share=SNAPSHOT_TEST_SHARE,
        include_takeovers=False,
        description="manage.py loop_demo: simulated reviewers on simulated traffic",
    )


def snapshot_questions(snapshot: DatasetSnapshot) -> set[str]:
    """Every question text in any row of the snapshot (normalised)."""
    return {normalised(str(row.data.get("prompt", ""))) for row in snapshot.rows.all().only("data")}


def demo_admin():
    User = get_user_model()
    return User.objects.filter(Q(username="admin") | Q(is_superuser=True)).order_by("pk").first()


def train_questions() -> list[dict[str, Any]]:
    """The customer traffic: ``questions_train.jsonl`` without the few questions that
    also appear, word for word, in the held-out set (3 of 570 do): nothing held out is
    ever asked before the measurement or labelled."""
    held_out = {normalised(q["question"]) for q in eval_questions()}
    return [q for q in questions_load("train") if normalised(q["question"]) not in held_out]


def eval_questions() -> list[dict[str, Any]]:
    return questions_load("eval")


def _demo_labels_with_better_answers():
    return Label.objects.filter(
        item__batch__policy__name=POLICY_NAME, status=Label.Status.SUBMITTED
    ).exclude(better_answer="")


def memory_revoke_demo(*, by: Any) -> int:
    """Revoke the answers an earlier run of the demo approved, so that the 'before' and
    'after adapter' passes are measured without them; returns how many."""
    from chat.services import support_answer_revoke

    refs = [
        f"labeling.Label:{pk}"
        for pk in _demo_labels_with_better_answers().values_list("pk", flat=True)
    ]
    revoked = 0
    for row in SupportAnswer.objects.filter(
        status=SupportAnswer.Status.APPROVED, origin_ref__in=refs
    ):
        support_answer_revoke(support_answer=row, by=by)
        revoked += 1
    return revoked


def memory_approve(*, approver: Any, labelled: dict[str, dict[str, Any]]) -> int:
    """The demo admin approves the simulated reviewers' better answers for the answer
    memory (``label_better_answer_approve``, as the Labels admin action does): one label
    per reviewed answer, only answers to questions in ``labelled`` (the training
    traffic), never an "I don't know". Returns how many answers are approved."""
    from labeling.services.labels import label_better_answer_approve

    approved = 0
    seen: set[int] = set()
    labels = _demo_labels_with_better_answers().select_related("item").order_by("item_id", "pk")
    for label in labels:
        if label.item_id in seen or normalised(label.item.question) not in labelled:
            continue
        if normalised(label.better_answer) == normalised(NO_ANSWER_TEXT):
            continue
        seen.add(label.item_id)
        label_better_answer_approve(label=label, approver=approver)
        approved += 1
    return approved


def memory_questions() -> set[str]:
    """Every question in the answer memory that customers may get (normalised)."""
    return {
        normalised(q)
        for q in SupportAnswer.objects.filter(status=SupportAnswer.Status.APPROVED).values_list(
            "question", flat=True
        )
    }
