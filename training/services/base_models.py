"""Where a run's base model comes from: a local folder, or an S3 prefix copied to a cache.

Never a model hub: ids like "org/name" are refused before anything is fetched.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings


class BaseModelError(ValueError):
    pass


def s3_client():
    import boto3

    return boto3.client("s3", region_name=settings.AWS_REGION)


def base_model_local_path(*, uri: str, client=None) -> Path:
    """A local folder holding the base model named by ``uri``.

    ``/abs/path``: used as is (must hold config.json). ``s3://bucket/prefix``: every
    object under the prefix is downloaded once into TRAINING_OUTPUT_DIR/base-models.
    """
    uri = uri.strip()
    if uri.startswith("s3://"):
        parsed = urlparse(uri)
        bucket, prefix = parsed.netloc, parsed.path.lstrip("/").rstrip("/")
        if not bucket or not prefix:
            raise BaseModelError(f"{uri!r} must be s3://bucket/prefix")
        target = Path(settings.TRAINING_OUTPUT_DIR) / "base-models" / bucket / prefix
        if (target / "config.json").exists():
            return target
        client = client or s3_client()
        paginator = client.get_paginator("list_objects_v2")
        found = 0
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix + "/"):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix) + 1 :]
                if not relative or relative.endswith("/") or ".." in Path(relative).parts:
                    continue
                destination = target / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, item["Key"], str(destination))
                found += 1
        if not found:
            raise BaseModelError(f"no objects under {uri}")
        return target
    if not uri.startswith("/"):
        raise BaseModelError(
            f"{uri!r} is not an absolute folder or an s3:// URI; model hub ids are refused"
        )
    path = Path(uri)
    if not (path / "config.json").exists():
        raise BaseModelError(
            f"base model folder {uri} does not exist or holds no config.json "
            "(build the starter with `manage.py build_starter_model`)"
        )
    return path
