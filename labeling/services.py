from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Max

from labeling.models import DatasetSnapshot, SnapshotRow


@transaction.atomic
def snapshot_create_from_rows(
    *,
    name: str,
    rows: dict[str, list[dict[str, Any]]],
    created_by: AbstractBaseUser | None = None,
    filters: dict[str, Any] | None = None,
    description: str = "",
    redacted: bool = False,
) -> DatasetSnapshot:
    """Freeze rows (keyed by ``SnapshotRow.Kind``) into the next version of ``name``."""
    unknown = set(rows) - set(SnapshotRow.Kind.values)
    if unknown:
        raise ValueError(f"unknown row kinds: {sorted(unknown)}")
    version = (
        DatasetSnapshot.objects.select_for_update()
        .filter(name=name)
        .aggregate(v=Max("version"))["v"]
        or 0
    ) + 1
    snapshot = DatasetSnapshot.objects.create(
        name=name,
        version=version,
        created_by=created_by,
        filters=filters or {},
        description=description,
        redacted=redacted,
        row_counts={kind: len(kind_rows) for kind, kind_rows in rows.items()},
    )
    SnapshotRow.objects.bulk_create(
        SnapshotRow(snapshot=snapshot, kind=kind, position=i, data=data)
        for kind, kind_rows in rows.items()
        for i, data in enumerate(kind_rows)
    )
    return snapshot
