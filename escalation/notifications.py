"""E-mail to agents: Django's e-mail backend, or Amazon SES through boto3 when USE_SES."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import boto3
from django.conf import settings
from django.core.mail import send_mail


@lru_cache(maxsize=1)
def ses_client() -> Any:
    return boto3.client("sesv2", region_name=settings.AWS_REGION)


def email_send(*, to: list[str], subject: str, body: str) -> None:
    if not to:
        return
    if settings.USE_SES:
        ses_client().send_email(
            FromEmailAddress=settings.DEFAULT_FROM_EMAIL,
            Destination={"ToAddresses": to},
            Content={
                "Simple": {
                    "Subject": {"Data": subject, "Charset": "UTF-8"},
                    "Body": {"Text": {"Data": body, "Charset": "UTF-8"}},
                }
            },
        )
        return
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, to, fail_silently=False)
