"""Ground Truth manifests (the blog's format) and the pre-/post-annotation Lambdas."""

from __future__ import annotations

import io
import json

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from labeling import groundtruth, lambdas
from labeling.models import Label, LabelingItem
from tests.labeling.conftest import answered, label_all, make_item

BLOG_LINE = (
    '{"source":"what is amazon SageMaker?,AWS SageMaker is a machine learning service that '
    'allows you to train and deploy machine learning models in the cloud.","RHLF-custom-feedback":'
    '{"workerId":"private.us-east-1.8c185c045aed3bef","result":{"relevance":{"label":"5 - Highly '
    'Relevant"}},"labeledContent":{"content":"what is amazon SageMaker?,AWS SageMaker is a '
    "machine learning service that allows you to train and deploy machine learning models in the "
    'cloud."}},"RHLF-custom-feedback-metadata":{"type":"groundtruth/custom","job-name":'
    '"rhlf-custom-feedback","human-annotated":"yes","creation-date":"2023-08-09T02:46:05.852000"}}'
)


def _shape(value):
    """Keys and value types, recursively: the manifest's format without its content."""
    if isinstance(value, dict):
        return {key: _shape(inner) for key, inner in value.items()}
    return type(value).__name__


@pytest.mark.django_db
@pytest.mark.usefixtures("no_judge")
def test_output_manifest_matches_the_blogs_example_field_for_field(reviewers):
    item = make_item(answered("what is amazon SageMaker?", "A machine learning service."))
    label_all(item, [5, 5, 4])

    lines = [json.loads(line) for line in groundtruth.output_manifest_lines()]

    blog = json.loads(BLOG_LINE)
    assert len(lines) == 3
    assert all(_shape(line) == _shape(blog) for line in lines)
    first = lines[0]
    assert first["source"] == "what is amazon SageMaker?,A machine learning service."
    assert first["RHLF-custom-feedback"]["result"] == {
        "relevance": {"label": "5 - Highly Relevant"}
    }
    assert first["RHLF-custom-feedback"]["labeledContent"] == {"content": first["source"]}
    metadata = first["RHLF-custom-feedback-metadata"]
    assert {k: metadata[k] for k in ("type", "job-name", "human-annotated")} == {
        "type": "groundtruth/custom",
        "job-name": "rhlf-custom-feedback",
        "human-annotated": "yes",
    }
    assert len(metadata["creation-date"]) == len("2023-08-09T02:46:05.852000")


@pytest.mark.django_db
@pytest.mark.usefixtures("no_judge")
def test_labels_still_open_are_not_exported(reviewers):
    item = make_item()
    first = item.labels.first()
    from labeling import services

    services.label_submit(label=first, reviewer=first.reviewer, score=3)

    assert list(groundtruth.output_manifest_lines()) == []


@pytest.mark.django_db
@pytest.mark.usefixtures("no_judge")
def test_export_then_import_reproduces_the_labels(reviewers):
    for i, scores in enumerate([[5, 4, 5], [1, 2, 1], [3, 3, 4]]):
        item = make_item(answered(f"Question {i}, please?", f"Answer {i}, with a comma."))
        label_all(item, scores, better="A better answer." if i == 1 else "")
    exported = list(groundtruth.output_manifest_lines())
    before = set(
        Label.objects.values_list(
            "item__question", "item__answer", "reviewer_id", "score", "better_answer"
        )
    )
    LabelingItem.objects.all().delete()

    result = groundtruth.output_manifest_import(lines=exported)

    after = set(
        Label.objects.values_list(
            "item__question", "item__answer", "reviewer_id", "score", "better_answer"
        )
    )
    assert after == before
    assert result.items_created == 3 and result.labels_created == 9 and result.consolidated == 3
    assert sorted(LabelingItem.objects.values_list("median_score", flat=True)) == [1.0, 3.0, 5.0]
    assert list(groundtruth.output_manifest_lines()) == exported


@pytest.mark.django_db
def test_importing_the_blogs_example_creates_an_item_and_a_worker_label():
    result = groundtruth.output_manifest_import(lines=[BLOG_LINE])

    item = LabelingItem.objects.get()
    assert item.question == "what is amazon SageMaker?"
    assert item.answer.startswith("AWS SageMaker is a machine learning service")
    label = item.labels.get()
    assert (label.worker_id, label.score, label.reviewer_id) == (
        "private.us-east-1.8c185c045aed3bef",
        5,
        None,
    )
    assert item.status == LabelingItem.Status.CONSOLIDATED
    assert result.labels_created == 1


@pytest.mark.django_db
def test_a_bad_manifest_imports_nothing_and_names_every_bad_line():
    blog = json.loads(BLOG_LINE)
    no_label = {**blog}
    no_label["RHLF-custom-feedback"] = {**blog["RHLF-custom-feedback"], "result": {}}
    wrong_type = json.loads(BLOG_LINE.replace("groundtruth/custom", "groundtruth/other"))
    unknown_reviewer = json.loads(
        BLOG_LINE.replace("private.us-east-1.8c185c045aed3bef", "private.loopdesk.999999")
    )
    lines = [
        BLOG_LINE,
        "{not json",
        json.dumps(no_label),
        json.dumps(wrong_type),
        json.dumps(unknown_reviewer),
        json.dumps({"RHLF-custom-feedback": {}}),
    ]

    with pytest.raises(groundtruth.ManifestError) as error:
        groundtruth.output_manifest_import(lines=lines)

    messages = error.value.errors
    assert [message.split(":")[0] for message in messages] == [
        "line 2",
        "line 3",
        "line 4",
        "line 5",
        "line 6",
    ]
    assert "relevance.label" in messages[1]
    assert LabelingItem.objects.count() == 0 and Label.objects.count() == 0


@pytest.mark.django_db
def test_an_empty_manifest_is_an_error():
    with pytest.raises(groundtruth.ManifestError):
        groundtruth.output_manifest_import(lines=["", "  "])


@pytest.mark.django_db
@pytest.mark.usefixtures("no_judge")
def test_input_manifest_has_one_source_per_item(reviewers):
    make_item(answered("Q1?", "A1"))
    make_item(answered("Q2?", "A2"))

    lines = [json.loads(line) for line in groundtruth.input_manifest_lines()]

    assert lines == [{"source": "Q1?,A1"}, {"source": "Q2?,A2"}]


def test_pre_annotation_lambda_passes_the_data_object_as_task_input():
    event = {
        "version": "2018-10-16",
        "labelingJobArn": "arn:aws:sagemaker:us-east-1:111122223333:labeling-job/rhlf",
        "dataObject": {"source-ref": "s3://bucket/chat-transcripts/answer-1.json"},
    }

    assert lambdas.pre_annotation_handler(event, None) == {
        "taskInput": {"source-ref": "s3://bucket/chat-transcripts/answer-1.json"}
    }


def test_post_annotation_lambda_consolidates_the_workers_annotations(monkeypatch):
    source = "what is amazon SageMaker?,AWS SageMaker is a machine learning service."
    annotations = [
        {
            "datasetObjectId": "0",
            "dataObject": {"content": source},
            "annotations": [
                {
                    "workerId": "private.us-east-1.8c185c045aed3bef",
                    "annotationData": {
                        "content": json.dumps({"relevance": {"label": "5 - Highly Relevant"}})
                    },
                }
            ],
        }
    ]
    body = json.dumps(annotations).encode()
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )
    stubber = Stubber(client)
    stubber.add_response(
        "get_object",
        {"Body": StreamingBody(io.BytesIO(body), len(body))},
        {"Bucket": "gt-output", "Key": "rhlf/annotations/consolidated.json"},
    )
    monkeypatch.setattr(lambdas, "s3_client", lambda: client)
    event = {
        "version": "2018-10-16",
        "labelingJobArn": "arn:aws:sagemaker:us-east-1:111122223333:labeling-job/rhlf",
        "labelCategories": ["1", "2", "3", "4", "5"],
        "labelAttributeName": "RHLF-custom-feedback",
        "roleArn": "arn:aws:iam::111122223333:role/gt",
        "payload": {"s3Uri": "s3://gt-output/rhlf/annotations/consolidated.json"},
    }

    with stubber:
        labels = lambdas.post_annotation_handler(event, None)

    assert labels == [
        {
            "datasetObjectId": "0",
            "consolidatedAnnotation": {
                "content": {
                    "RHLF-custom-feedback": {
                        "workerId": "private.us-east-1.8c185c045aed3bef",
                        "result": {"relevance": {"label": "5 - Highly Relevant"}},
                        "labeledContent": {"content": source},
                    }
                }
            },
        }
    ]


@pytest.mark.django_db
@pytest.mark.usefixtures("no_judge")
def test_reimporting_a_changed_score_reconsolidates_the_item(reviewers):
    item = make_item(answered("Q?", "A"))
    label_all(item, [4, 4, 5])
    lines = [json.loads(line) for line in groundtruth.output_manifest_lines()]
    lines[0]["RHLF-custom-feedback"]["result"]["relevance"]["label"] = "1 - Not Relevant"
    lines[1]["RHLF-custom-feedback"]["result"]["relevance"]["label"] = "1 - Not Relevant"

    result = groundtruth.output_manifest_import(lines=[json.dumps(line) for line in lines])

    item.refresh_from_db()
    assert result.labels_updated == 2 and result.labels_created == 0
    assert (item.median_score, item.score_spread, item.status) == (1.0, 4, "adjudication")
