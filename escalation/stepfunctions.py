"""AWS Step Functions: start the human-review execution and answer its task token."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import boto3
from django.conf import settings


@lru_cache(maxsize=1)
def client() -> Any:
    """The boto3 Step Functions client (cached; tests wrap it in a botocore Stubber)."""
    return boto3.client("stepfunctions", region_name=settings.AWS_REGION)


def workflow_configured() -> bool:
    return bool(settings.STEP_FUNCTIONS_STATE_MACHINE_ARN)


def execution_start(*, name: str, payload: dict[str, Any]) -> str:
    """Start the state machine; ``name`` makes a repeated start a no-op on AWS's side
    (StartExecution with an existing name and the same input is idempotent)."""
    response = client().start_execution(
        stateMachineArn=settings.STEP_FUNCTIONS_STATE_MACHINE_ARN,
        name=name,
        input=json.dumps(payload, sort_keys=True),
    )
    return str(response["executionArn"])


def task_succeed(*, task_token: str, output: dict[str, Any]) -> None:
    client().send_task_success(taskToken=task_token, output=json.dumps(output, sort_keys=True))


def task_fail(*, task_token: str, error: str, cause: str) -> None:
    client().send_task_failure(taskToken=task_token, error=error[:256], cause=cause[:32768])


def token_already_answered(exc: Exception) -> bool:
    """AWS refuses a token that was answered or timed out: retrying will never help."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in {"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"}
