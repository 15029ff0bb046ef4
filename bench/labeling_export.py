"""Export 100k labels as a Ground Truth output manifest and as snapshot JSON Lines,
streamed, and report time and peak memory. Not a test.

Builds its own database (a temporary SQLite file unless DATABASE_URL is set): items with
three submitted labels each, consolidated, then a frozen snapshot. Each export is read
to the end through the same code path the HTTP responses stream from.

    .venv/bin/python bench/labeling_export.py [--labels 100000]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loopdesk_labeling_bench \\
        .venv/bin/python bench/labeling_export.py
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
os.environ.setdefault("DJANGO_DEBUG", "false")  # DEBUG would keep every query in memory
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "DATABASE_URL" not in os.environ:
    _tmp = tempfile.mkdtemp(prefix="labeling-bench-")
    os.environ["LOOPDESK_VAR_DIR"] = _tmp
    os.environ["DATABASE_URL"] = f"sqlite:///{_tmp}/bench.sqlite3"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from labeling.exports import snapshot_export_lines  # noqa: E402
from labeling.groundtruth import output_manifest_lines  # noqa: E402
from labeling.models import Label, LabelingBatch, LabelingItem, SnapshotRow  # noqa: E402
from labeling.selectors import manifest_source, source_hash  # noqa: E402
from labeling.services import snapshot_create_from_rows  # noqa: E402

ANSWER = (
    "The Hub only connects on the 2.4 GHz band. If your router uses one network name for "
    "both bands the Hub picks 2.4 GHz automatically; otherwise choose the 2.4 GHz network."
)


def build(labels: int) -> None:
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    reviewers = [
        user_model.objects.get_or_create(username=f"bench-reviewer-{i}")[0] for i in range(3)
    ]
    items_needed = labels // 3
    batch = LabelingBatch.objects.create(name="bench")
    now = timezone.now()
    chunk = 5000
    for start in range(0, items_needed, chunk):
        with transaction.atomic():
            items = LabelingItem.objects.bulk_create(
                [
                    LabelingItem(
                        batch=batch,
                        question=f"Does the hub work on 5GHz wifi? (#{i})",
                        answer=ANSWER,
                        source_hash=source_hash(
                            manifest_source(f"Does the hub work on 5GHz wifi? (#{i})", ANSWER)
                        ),
                        status=LabelingItem.Status.CONSOLIDATED,
                        median_score=4.0,
                        score_spread=1,
                        consolidated_at=now,
                    )
                    for i in range(start, min(start + chunk, items_needed))
                ]
            )
            Label.objects.bulk_create(
                [
                    Label(
                        item=item,
                        reviewer=reviewer,
                        status=Label.Status.SUBMITTED,
                        score=4 + (n == 2),
                        submitted_at=now,
                    )
                    for item in items
                    for n, reviewer in enumerate(reviewers)
                ]
            )
    rows = [
        {"prompt": f"Question {i}?", "response": ANSWER, "score": 4.0, "split": "train"}
        for i in range(labels)
    ]
    snapshot_create_from_rows(name="bench", rows={SnapshotRow.Kind.SCORED: rows})


def measure(name: str, lines: Callable[[], Iterable[str]]) -> None:
    tracemalloc.start()
    started = time.perf_counter()
    count = size = 0
    with open(os.devnull, "w") as sink:
        for line in lines():
            sink.write(line)
            count += 1
            size += len(line)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{name:<32} {count:>7} lines {size / 1e6:7.1f} MB  {elapsed:6.2f} s  "
        f"{count / elapsed:9.0f} lines/s  peak traced {peak / 1e6:6.1f} MB  max RSS {rss:6.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels", type=int, default=100_000)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    build(args.labels)
    print(f"built {Label.objects.count()} labels in {time.perf_counter() - started:.1f} s")
    from labeling.models import DatasetSnapshot

    snapshot = DatasetSnapshot.objects.get(name="bench")
    measure("Ground Truth output manifest", output_manifest_lines)
    measure(
        "snapshot scored rows (JSONL)",
        lambda: snapshot_export_lines(snapshot=snapshot, kind="scored"),
    )
    measure(
        "snapshot rows, redacted",
        lambda: snapshot_export_lines(snapshot=snapshot, kind="scored", redact=True),
    )


if __name__ == "__main__":
    main()
