"""Run artifacts in the configured storage (local media or S3) and their local copies."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from training.models import TrainingRun

MANIFEST = "manifest.json"


def code_version() -> str:
    """``git describe`` of the checkout, when git and the repository are there."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def artifacts_store(
    *, run: TrainingRun, local_dir: Path, manifest: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Copy every file of ``local_dir`` (adapter/, reward_model/) plus the manifest to
    storage under ``training/runs/<id>/``; returns that prefix and the stored manifest
    (with its file list)."""
    prefix = f"training/runs/{run.pk}"
    files = []
    for path in sorted(local_dir.rglob("*")):
        if not path.is_file() or "trainer" in path.relative_to(local_dir).parts:
            continue
        relative = path.relative_to(local_dir).as_posix()
        if relative in ("spec.json", "result.json"):
            continue
        name = f"{prefix}/{relative}"
        if default_storage.exists(name):
            default_storage.delete(name)
        with path.open("rb") as handle:
            default_storage.save(name, ContentFile(handle.read()))
        files.append(relative)
    manifest = {**manifest, "files": files}
    name = f"{prefix}/{MANIFEST}"
    if default_storage.exists(name):
        default_storage.delete(name)
    default_storage.save(name, ContentFile(json.dumps(manifest, indent=2).encode()))
    return prefix, manifest


def artifact_local_dir(*, run: TrainingRun, kind: str) -> Path:
    """A local folder with the run's ``kind`` artifact ("adapter" or "reward_model").

    Local storage is used in place; other storages (S3) are copied once into
    TRAINING_OUTPUT_DIR/cache/run-<id>.
    """
    files = [f for f in run.manifest.get("files", []) if f.startswith(f"{kind}/")]
    try:
        local = Path(default_storage.path(f"{run.artifact_prefix}/{kind}"))
    except NotImplementedError:
        local = Path(settings.TRAINING_OUTPUT_DIR) / "cache" / f"run-{run.pk}" / kind
        for relative in files:
            target = local.parent / relative
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with default_storage.open(f"{run.artifact_prefix}/{relative}", "rb") as src:
                target.write_bytes(src.read())
    return local


def artifacts_zip(*, run: TrainingRun) -> bytes:
    """The run's artifacts and manifest as one zip archive (admin download)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for relative in [*run.manifest.get("files", []), MANIFEST]:
            with default_storage.open(f"{run.artifact_prefix}/{relative}", "rb") as src:
                archive.writestr(f"run-{run.pk}/{relative}", src.read())
    return buffer.getvalue()
