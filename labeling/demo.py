"""A realistic demo set of labels, for newcomers and for the training issue. Idempotent.

Conversations from ``chat/demo/questions.json`` are answered with the reference answer or
a plausible worse one (a partial answer, a vague deflection, another question's answer).
Three demo reviewers label them with realistic disagreement; the last few items stay
open in the demo reviewer's queue; a snapshot with scored rows, pairs and KTO rows is
frozen once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from chat.models import Article, Conversation, CustomerFeedback, Message
from chat.services import message_append
from labeling import services
from labeling.models import DatasetSnapshot, Label, LabelingBatch, LabelingItem

# Share of demo questions held out of the snapshot's training split (and, so that the
# before/after evaluation means something, out of the starter model's warm-up too).
DEMO_TEST_SHARE = 0.15

logger = logging.getLogger(__name__)

QUESTIONS_FILE = Path(settings.BASE_DIR) / "chat" / "demo" / "questions.json"
DEMO_QUESTIONS = 40
OPEN_FOR_DEMO_REVIEWER = 10
BATCH_NAME = "Demo labels"
SNAPSHOT_NAME = "demo-support"
REVIEWERS = ("reviewer", "reviewer2", "reviewer3")
VAGUE = (
    "Thanks for reaching out! Please check the settings in the Brightwave app, and if that "
    "does not help, contact our support team."
)


@dataclass
class DemoLabelsResult:
    conversations: int = 0
    items: int = 0
    labels: int = 0
    judged: int = 0
    snapshot: DatasetSnapshot | None = None
    snapshot_created: bool = False


def _answers(index: int, questions: list[dict]) -> list[tuple[str, int]]:
    """(answer, true relevance) for one question: the reference, and often a worse one."""
    reference = questions[index]["reference_answer"]
    kind = index % 4
    if kind == 0:
        return [(reference, 5)]
    if kind == 1:
        worse = (reference.split(". ")[0].rstrip(".") + ".", 3)
    elif kind == 2:
        worse = (questions[(index + 11) % len(questions)]["reference_answer"], 1)
    else:
        worse = (VAGUE, 2)
    return [worse, (reference, 5)]


def _reviewer_score(true: int, index: int, reviewer_no: int) -> int:
    if reviewer_no == 1 and index % 5 == 0:
        return min(5, true + 1)
    if reviewer_no == 2 and index % 7 == 0:
        return max(1, true - 1)
    if reviewer_no == 2 and index % 13 == 5:
        return 6 - true  # an outlier: these items land on the adjudication list
    return true


def demo_labels_load(*, judge: bool = True) -> DemoLabelsResult:
    """Needs the demo users and articles (``config.demo.demo_load``, run by the
    ``load_demo_labels`` command first)."""
    result = DemoLabelsResult()
    questions = json.loads(QUESTIONS_FILE.read_text())[:DEMO_QUESTIONS]
    user_model = get_user_model()
    reviewers = [user_model.objects.get(username=name) for name in REVIEWERS]
    titles = dict(Article.objects.values_list("slug", "title"))
    batch, _ = LabelingBatch.objects.get_or_create(name=BATCH_NAME, policy=None)

    plan: list[tuple[LabelingItem, int, int, str]] = []
    for index, question in enumerate(questions):
        for variant, (answer, true) in enumerate(_answers(index, questions)):
            item = _demo_item(
                index=index,
                variant=variant,
                question=question,
                answer=answer,
                true=true,
                titles=titles,
                batch=batch,
                result=result,
            )
            plan.append((item, index, true, question["reference_answer"]))

    open_from = len(plan) - OPEN_FOR_DEMO_REVIEWER
    for position, (item, index, true, reference) in enumerate(plan):
        labels = {label.reviewer_id: label for label in item.labels.all()}
        for reviewer_no, reviewer in enumerate(reviewers):
            label = labels.get(reviewer.pk)
            if label is None or label.status != Label.Status.ASSIGNED:
                continue
            if reviewer_no == 0 and position >= open_from:
                continue  # left in the demo reviewer's queue
            better = reference if true <= 3 and reviewer_no == 0 and index % 3 == 0 else ""
            services.label_submit(
                label=label,
                reviewer=reviewer,
                score=_reviewer_score(true, index, reviewer_no),
                better_answer=better,
                comment="" if true >= 4 else "Does not fully answer the question.",
            )
            result.labels += 1

    if judge:
        result.judged = services.items_judge(
            items=LabelingItem.objects.filter(batch=batch, judged_at__isnull=True)
        )

    snapshot = DatasetSnapshot.objects.filter(name=SNAPSHOT_NAME).order_by("-version").first()
    if snapshot is None:
        snapshot = services.snapshot_create_from_labels(
            name=SNAPSHOT_NAME,
            filters={"batch_ids": [batch.pk]},
            test_share=DEMO_TEST_SHARE,
            redact=True,
            description="Demo labels from three reviewers (load_demo_labels).",
        )
        result.snapshot_created = True
    result.snapshot = snapshot
    return result


@transaction.atomic
def _demo_item(
    *,
    index: int,
    variant: int,
    question: dict,
    answer: str,
    true: int,
    titles: dict[str, str],
    batch: LabelingBatch,
    result: DemoLabelsResult,
) -> LabelingItem:
    visitor = f"demo-labels-{index}-{variant}"
    conversation = Conversation.objects.filter(visitor_id=visitor).first()
    if conversation is None:
        conversation = Conversation.objects.create(
            visitor_id=visitor, title=question["question"][:200], status=Conversation.Status.ENDED
        )
        result.conversations += 1
        asked, _ = message_append(
            conversation=conversation,
            role=Message.Role.CUSTOMER,
            text=question["question"],
            client_id="demo-question",
            broadcast=False,
        )
        message_append(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            text=answer,
            client_id="demo-answer",
            broadcast=False,
            reply_to=asked,
            sources=[
                {
                    "slug": question["article"],
                    "title": titles.get(question["article"], question["article"]),
                    "score": 0.62,
                }
            ]
            if question.get("article")
            else [],
            provider="local",
            model_name="minilm-retrieval",
        )
        if true <= 2:
            CustomerFeedback.objects.create(
                conversation=conversation,
                score=true,
                better_answer=question["reference_answer"] if index % 2 == 0 else "",
                comment="That did not help.",
            )
    message = Message.objects.select_related("reply_to").get(
        conversation=conversation, client_id="demo-answer"
    )
    item = LabelingItem.objects.filter(message=message).first()
    if item is None:
        item = services.item_create_from_message(
            message=message, reason=LabelingItem.Reason.MANUAL, batch=batch, judge=False
        )
        assert item is not None
        result.items += 1
    return item
