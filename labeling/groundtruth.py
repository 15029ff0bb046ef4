"""SageMaker Ground Truth manifests: export input and output manifests, import output.

The output manifest mirrors the blog's example line for line::

    {"source": "<question>,<answer>",
     "<attribute>": {"workerId": "...", "result": {"relevance": {"label": "5 - Highly Relevant"}},
                     "labeledContent": {"content": "<question>,<answer>"}},
     "<attribute>-metadata": {"type": "groundtruth/custom", "job-name": "...",
         "human-annotated": "yes", "creation-date": "2023-08-09T02:46:05.852000"}}

One line per worker annotation on a consolidated item, as the blog's post-annotation
Lambda produces them, so importing an exported manifest reproduces every label.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat.errors import ApplicationError
from chat.payloads import PayloadError, json_loads_bounded, strings_storable
from labeling.models import Label, LabelingBatch, LabelingItem
from labeling.selectors import manifest_source, source_hash

RELEVANCE_LABELS = {
    1: "1 - Not Relevant",
    2: "2 - Slightly Relevant",
    3: "3 - Moderately Relevant",
    4: "4 - Relevant",
    5: "5 - Highly Relevant",
}
WORKER_PREFIX = "private.loopdesk."
_LABEL_SCORE = re.compile(r"^\s*([1-5])\b")


def worker_id_for(label: Label) -> str:
    """The label's ``workerId``: an imported worker's own id, else a stable private id."""
    return label.worker_id or f"{WORKER_PREFIX}{label.reviewer_id}"


def creation_date(value: dt.datetime) -> str:
    """UTC without offset, microseconds always shown: "2023-08-09T02:46:05.852000"."""
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def output_manifest_line(
    *, item: LabelingItem, label: Label, attribute: str, job_name: str
) -> dict[str, Any]:
    source = manifest_source(item.question, item.answer)
    result: dict[str, Any] = {"relevance": {"label": RELEVANCE_LABELS[int(label.score or 0)]}}
    # Not in the blog's template: our form also asks for a better answer and a comment.
    # They ride along inside "result" only when given, so plain labels match exactly.
    if label.better_answer:
        result["better_answer"] = label.better_answer
    if label.comment:
        result["comment"] = label.comment
    return {
        "source": source,
        attribute: {
            "workerId": worker_id_for(label),
            "result": result,
            "labeledContent": {"content": source},
        },
        f"{attribute}-metadata": {
            "type": "groundtruth/custom",
            "job-name": job_name,
            "human-annotated": "yes",
            "creation-date": creation_date(label.submitted_at or label.assigned_at),
        },
    }


def output_manifest_lines(
    *,
    items: Iterable[LabelingItem] | None = None,
    attribute: str | None = None,
    job_name: str | None = None,
) -> Iterator[str]:
    """JSON Lines of every submitted label on consolidated items (streamed)."""
    attribute = attribute or settings.LABELING_GT_LABEL_ATTRIBUTE
    job_name = job_name or settings.LABELING_GT_JOB_NAME
    labels = (
        Label.objects.filter(status=Label.Status.SUBMITTED)
        .exclude(item__status=LabelingItem.Status.LABELING)
        .select_related("item")
        .only(
            "score",
            "better_answer",
            "comment",
            "worker_id",
            "reviewer_id",
            "submitted_at",
            "assigned_at",
            "item__question",
            "item__answer",
        )
        .order_by("item_id", "pk")
    )
    if items is not None:
        labels = labels.filter(item__in=items)
    for label in labels.iterator(chunk_size=2000):
        line = output_manifest_line(
            item=label.item, label=label, attribute=attribute, job_name=job_name
        )
        yield json.dumps(line, ensure_ascii=False) + "\n"


def input_manifest_lines(*, items: Iterable[LabelingItem] | None = None) -> Iterator[str]:
    """An input manifest for a real Ground Truth job: {"source": "question,answer"}."""
    queryset = LabelingItem.objects.only("question", "answer").order_by("pk")
    if items is not None:
        queryset = queryset.filter(pk__in=[item.pk for item in items])
    for item in queryset.iterator(chunk_size=2000):
        yield (
            json.dumps({"source": manifest_source(item.question, item.answer)}, ensure_ascii=False)
            + "\n"
        )


# A manifest line is flat JSON a few levels deep; a worker id fits Label.worker_id; a
# Loopdesk reviewer id fits a 64-bit key.
LINE_MAX_BYTES = 1024 * 1024
LINE_MAX_DEPTH = 8
WORKER_ID_MAX_CHARS = Label._meta.get_field("worker_id").max_length or 200
USER_ID_MAX_DIGITS = 18
# How many problems an import reports by line (the count covers them all).
ERRORS_SHOWN = 20


class ManifestError(ApplicationError):
    """A manifest that cannot be imported. ``errors`` holds the first problems ("line N:
    problem", at most ``ERRORS_SHOWN``), ``error_count`` how many there were."""

    code = "invalid_manifest"

    def __init__(self, errors: list[str], *, error_count: int | None = None):
        count = len(errors) if error_count is None else error_count
        shown = errors[:ERRORS_SHOWN]
        more = f"; the first {len(shown)} are listed" if count > len(shown) else ""
        problems = "problem" if count == 1 else "problems"
        super().__init__(
            f"Nothing was imported: {count} {problems} in the manifest{more}.",
            fields={"manifest": shown},
        )
        self.errors = shown
        self.error_count = count


def manifest_size_check(upload: Any) -> Any:
    """Refuse an uploaded manifest over ``LABELING_MANIFEST_MAX_BYTES`` before reading it."""
    limit = settings.LABELING_MANIFEST_MAX_BYTES
    if upload.size is not None and upload.size > limit:
        raise ManifestError([f"line 1: the manifest is larger than {limit} bytes"])
    return upload


def _decoded_lines(lines: Iterable[str | bytes], errors: list[str]) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line; a line that is not UTF-8 is reported, and the
    import stops at ``LABELING_MANIFEST_MAX_BYTES``."""
    limit = settings.LABELING_MANIFEST_MAX_BYTES
    size = 0
    for line_no, raw in enumerate(lines, start=1):
        size += len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "replace"))
        if size > limit:
            errors.append(f"line {line_no}: the manifest is larger than {limit} bytes")
            return
        if isinstance(raw, bytes):
            if line_no == 1 and raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                errors.append("line 1: the file is UTF-16; save the manifest as UTF-8")
                return
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                errors.append(f"line {line_no}: not UTF-8 text")
                continue
        yield line_no, raw


@dataclass
class ParsedLine:
    line_no: int
    source: str
    worker_id: str
    score: int
    better_answer: str
    comment: str
    created: dt.datetime | None


@dataclass
class ImportResult:
    items_created: int = 0
    labels_created: int = 0
    labels_updated: int = 0
    consolidated: int = 0
    batch: LabelingBatch | None = None
    item_ids: list[int] = field(default_factory=list)


def _parse_line(line_no: int, raw: str, attribute: str | None) -> tuple[ParsedLine | None, str]:
    try:
        data = json_loads_bounded(raw, max_bytes=LINE_MAX_BYTES, max_depth=LINE_MAX_DEPTH)
    except PayloadError as exc:
        return None, f"line {line_no}: {exc.message}"
    if not isinstance(data, dict):
        return None, f"line {line_no}: expected a JSON object"
    if not strings_storable(data):
        return None, f"line {line_no}: contains characters that cannot be stored (NUL, surrogates)"
    source = data.get("source")
    if not isinstance(source, str) or not source:
        return None, f'line {line_no}: missing "source"'
    if attribute is None:
        names = [key for key in data if key != "source" and not key.endswith("-metadata")]
        if len(names) != 1:
            return None, f"line {line_no}: expected exactly one label attribute, got {names}"
        attribute = names[0]
    label = data.get(attribute)
    metadata = data.get(f"{attribute}-metadata")
    if not isinstance(label, dict):
        return None, f"line {line_no}: missing label attribute {attribute!r}"
    if not isinstance(metadata, dict) or metadata.get("type") != "groundtruth/custom":
        return None, f"line {line_no}: {attribute}-metadata must have type groundtruth/custom"
    worker = label.get("workerId")
    if not isinstance(worker, str) or not worker:
        return None, f"line {line_no}: missing workerId"
    if len(worker) > WORKER_ID_MAX_CHARS:
        return None, f"line {line_no}: workerId is longer than {WORKER_ID_MAX_CHARS} characters"
    if worker.startswith(WORKER_PREFIX):
        ident = worker.removeprefix(WORKER_PREFIX)
        if not (ident.isascii() and ident.isdigit()) or len(ident) > USER_ID_MAX_DIGITS:
            return None, f"line {line_no}: unknown Loopdesk reviewer {worker[:80]}"
    result = label.get("result")
    if isinstance(result, str):  # the post-annotation Lambda may pass raw content
        try:
            result = json.loads(result)
        except json.JSONDecodeError:
            result = None
    relevance = result.get("relevance") if isinstance(result, dict) else None
    text = relevance.get("label") if isinstance(relevance, dict) else None
    match = _LABEL_SCORE.match(str(text)) if text is not None else None
    if match is None:
        return None, f"line {line_no}: result.relevance.label must start with 1-5, got {text!r}"
    created = None
    if metadata.get("creation-date"):
        stamp = metadata["creation-date"]
        try:
            if not isinstance(stamp, str):
                raise ValueError(stamp)
            created = dt.datetime.fromisoformat(stamp)
        except ValueError:
            return None, f"line {line_no}: bad creation-date {str(stamp)[:40]!r}"
        if timezone.is_naive(created):
            created = created.replace(tzinfo=dt.UTC)
    assert isinstance(result, dict)
    return (
        ParsedLine(
            line_no=line_no,
            source=source,
            worker_id=worker,
            score=int(match.group(1)),
            better_answer=str(result.get("better_answer", "")),
            comment=str(result.get("comment", "")),
            created=created,
        ),
        "",
    )


def _split_source(source: str) -> tuple[str, str]:
    """Best effort for items we do not know: the question ends at the first "?,"."""
    at = source.find("?,")
    if at >= 0:
        return source[: at + 1], source[at + 2 :]
    question, _, answer = source.partition(",")
    return question, answer


def output_manifest_import(
    *, lines: Iterable[str | bytes], attribute: str | None = None, batch_name: str = ""
) -> ImportResult:
    """Import a Ground Truth output manifest, all or nothing.

    Every line is validated first; any error raises ``ManifestError`` with all the
    problems by line number and nothing is written. Items are found by their source
    (question,answer); unknown sources become new items. A worker id we exported
    (``private.loopdesk.<user id>``) maps back to that reviewer's label; other workers
    get labels of their own. Items whose labels are all in are consolidated.
    """
    from django.contrib.auth import get_user_model

    from labeling.services.labels import item_consolidate_if_complete

    parsed: list[ParsedLine] = []
    errors: list[str] = []
    seen: set[tuple[str, str]] = set()
    for line_no, raw in _decoded_lines(lines, errors):
        if not raw.strip():
            continue
        line, error = _parse_line(line_no, raw, attribute)
        if line is None:
            errors.append(error)
            continue
        if (line.source, line.worker_id) in seen:
            errors.append(f"line {line_no}: a second label by {line.worker_id} on one source")
            continue
        seen.add((line.source, line.worker_id))
        parsed.append(line)
    if not parsed and not errors:
        errors.append("line 1: the manifest is empty")
    user_ids = {
        int(line.worker_id.removeprefix(WORKER_PREFIX))
        for line in parsed
        if line.worker_id.startswith(WORKER_PREFIX)
        and line.worker_id.removeprefix(WORKER_PREFIX).isdigit()
    }
    known_users = set(get_user_model().objects.filter(pk__in=user_ids).values_list("pk", flat=True))
    for line in parsed:
        if line.worker_id.startswith(WORKER_PREFIX):
            ident = line.worker_id.removeprefix(WORKER_PREFIX)
            if int(ident) not in known_users:
                errors.append(f"line {line.line_no}: unknown Loopdesk reviewer {line.worker_id}")
    if errors:
        errors.sort(key=lambda error: int(error.split()[1].rstrip(":")))
        raise ManifestError(errors)

    result = ImportResult()
    with transaction.atomic():
        hashes = {source_hash(line.source) for line in parsed}
        items = {
            item.source_hash: item
            for item in LabelingItem.objects.select_for_update().filter(source_hash__in=hashes)
        }
        touched: dict[int, LabelingItem] = {}
        changed: set[int] = set()
        for line in parsed:
            digest = source_hash(line.source)
            item = items.get(digest)
            if item is None:
                if result.batch is None:
                    result.batch = LabelingBatch.objects.create(
                        name=batch_name or f"Ground Truth import {timezone.now():%Y-%m-%d %H:%M}"
                    )
                question, answer = _split_source(line.source)
                item = LabelingItem.objects.create(
                    batch=result.batch,
                    reason=LabelingItem.Reason.IMPORT,
                    question=question,
                    answer=answer,
                    source_hash=digest,
                    reviewers_required=sum(
                        1 for other in parsed if source_hash(other.source) == digest
                    ),
                )
                items[digest] = item
                result.items_created += 1
            touched[item.pk] = item
            if _import_label(item=item, line=line, result=result):
                changed.add(item.pk)
        for item in touched.values():
            if item_consolidate_if_complete(item=item, recompute=item.pk in changed):
                result.consolidated += 1
        result.item_ids = sorted(touched)
    return result


def _import_label(*, item: LabelingItem, line: ParsedLine, result: ImportResult) -> bool:
    """Create or update one label; True when anything changed."""
    ident = line.worker_id.removeprefix(WORKER_PREFIX)
    if line.worker_id.startswith(WORKER_PREFIX):
        label = Label.objects.filter(item=item, reviewer_id=int(ident)).first()
        defaults: dict[str, Any] = {"reviewer_id": int(ident)}
    else:
        label = Label.objects.filter(item=item, worker_id=line.worker_id).first()
        defaults = {"worker_id": line.worker_id}
    fields = {
        "score": line.score,
        "better_answer": line.better_answer,
        "comment": line.comment,
        "status": Label.Status.SUBMITTED,
        "submitted_at": line.created or timezone.now(),
    }
    if label is None:
        label = Label(item=item, source=Label.Source.GROUND_TRUTH, **defaults, **fields)
        label.full_clean(validate_unique=False, validate_constraints=False)
        label.save()
        result.labels_created += 1
        return True
    changed = [name for name, value in fields.items() if getattr(label, name) != value]
    if changed:
        for name in changed:
            setattr(label, name, fields[name])
        label.full_clean(validate_unique=False, validate_constraints=False)
        label.save(update_fields=changed)
        result.labels_updated += 1
    return bool(changed)
