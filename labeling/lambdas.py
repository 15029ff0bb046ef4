"""Ground Truth custom-workflow Lambdas, as plain importable functions.

Deploy each as a Lambda handler (``labeling.lambdas.pre_annotation_handler`` /
``post_annotation_handler``); they match the event shapes of the blog and of the
Ground Truth documentation and have no Django dependency.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlparse


def pre_annotation_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Ground Truth sends one data object; the task UI receives it as ``task.input``.

    Event: {"version": "2018-10-16", "labelingJobArn": ..., "dataObject": {"source": ...}
    or {"source-ref": "s3://..."}}. Returns {"taskInput": <dataObject>}.
    """
    return {"taskInput": event["dataObject"]}


def s3_client() -> Any:
    import boto3

    return boto3.client("s3")


def post_annotation_handler(event: dict[str, Any], context: Any = None) -> list[dict[str, Any]]:
    """Turn the workers' annotations into consolidated labels, as the blog's Lambda does.

    Event: {"version", "labelingJobArn", "labelCategories", "labelAttributeName",
    "roleArn", "payload": {"s3Uri": "s3://bucket/key"}}. The S3 object holds
    [{"datasetObjectId", "dataObject", "annotations": [{"workerId",
    "annotationData": {"content": "<json>"}}]}]. Returns one entry per annotation:
    {"datasetObjectId", "consolidatedAnnotation": {"content": {<labelAttributeName>:
    {"workerId", "result", "labeledContent"}}}}.
    """
    parsed_url = urlparse(event["payload"]["s3Uri"])
    body = s3_client().get_object(Bucket=parsed_url.netloc, Key=parsed_url.path[1:])["Body"]
    annotations = json.loads(body.read())
    consolidated_labels = []
    for dataset in annotations:
        for annotation in dataset["annotations"]:
            new_annotation = json.loads(annotation["annotationData"]["content"])
            consolidated_labels.append(
                {
                    "datasetObjectId": dataset["datasetObjectId"],
                    "consolidatedAnnotation": {
                        "content": {
                            event["labelAttributeName"]: {
                                "workerId": annotation["workerId"],
                                "result": new_annotation,
                                "labeledContent": dataset["dataObject"],
                            }
                        }
                    },
                }
            )
    return consolidated_labels
