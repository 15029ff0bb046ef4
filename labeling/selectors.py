from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from labeling.models import DatasetSnapshot, SnapshotRow


def snapshot_rows(
    *, snapshot: DatasetSnapshot, kind: str, split: str | None = None
) -> Iterator[dict[str, Any]]:
    """Rows of one kind in a stable order, optionally only one split ("train"/"test")."""
    rows = SnapshotRow.objects.filter(snapshot=snapshot, kind=kind).order_by("position")
    for data in rows.values_list("data", flat=True).iterator(chunk_size=2000):
        if split is None or data.get("split", "train") == split:
            yield data
