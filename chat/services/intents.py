"""Learning the intent router from the people who handle conversations.

- ``intent_example_record``: a message labelled by a person (an agent resolving a ticket
  says whether a person was needed; an agent flags a conversation the assistant kept).
  Generic: any app may call it with its own ``source``.
- ``router_version_train``: a new router version from the shipped training part plus
  those rows, evaluated on the shipped evaluation part (``manage.py intents_train``).
- ``router_version_make_live``: the gate. A version goes live only if its escalate-or-not
  precision and recall on the evaluation part are both at least the live version's.

The "intent router" training-run kind (``training``) trains with
``router_version_build`` in its child process (rows passed in, no database), keeps the
result with ``router_version_keep`` and makes it live (or rolls it back) with
``router_version_make_live``.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from chat.assistant.router import (
    META,
    SHIPPED_DIR,
    SHIPPED_VERSION,
    VOCABULARY,
    WEIGHTS,
    RouterModel,
    router_forget_live,
    router_model_load,
)
from chat.errors import ApplicationError, Conflict
from chat.models import Conversation, IntentExample, Message, RouterVersion, Turn
from chat.selectors import intent_examples_for_training

logger = logging.getLogger(__name__)

ARTIFACT_FILES = (META, VOCABULARY, WEIGHTS)


class RouterVersionRefused(Conflict):
    """The version evaluates worse than the live one (the message gives the numbers)."""

    code = "router_worse"


# --- labelled rows from people --------------------------------------------------------------------


@transaction.atomic
def intent_example_record(
    *,
    text: str,
    label: str,
    source: str,
    recorded_by: User | None = None,
    message: Message | None = None,
    conversation: Conversation | None = None,
    note: str = "",
) -> IntentExample:
    """Keep ``text`` labelled ``label`` as a training row for the router.

    With a ``message``, the row is that message's text, and what the router had said
    about it (its class and version, from the message's turn) is kept beside it; a
    second verdict from the same ``source`` on the same message replaces the first
    (the row is locked while it is updated).
    """
    router_label = router_version = ""
    if message is not None:
        text = message.text
        conversation = conversation or message.conversation
        turn = Turn.objects.filter(customer_message=message).first()
        if turn is not None:
            router_label, router_version = turn.intent, turn.router_version
    text = (text or "").strip()
    if not text:
        raise ApplicationError("There is no message text to learn from.", code="empty")
    example = None
    if message is not None:
        example = (
            IntentExample.objects.select_for_update().filter(message=message, source=source).first()
        )
    if example is None:
        example = IntentExample(message=message, source=source)
    example.text = text
    example.label = label
    example.conversation = conversation
    example.router_label = router_label
    example.router_version = router_version
    example.note = note[:300]
    example.recorded_by = recorded_by
    example.full_clean(validate_constraints=False)
    example.save()
    return example


# --- where a version's files live -----------------------------------------------------------------


def _prefix(name: str) -> str:
    return f"router/versions/{name}"


def router_version_local_dir(*, version: RouterVersion) -> Path:
    """A local folder with the version's files: the repository's for the shipped one,
    the storage's own folder when it is local, else a copy cached under
    ``VAR_DIR/models/router/``."""
    if version.source == RouterVersion.Source.SHIPPED:
        return SHIPPED_DIR / version.name
    try:
        return Path(default_storage.path(version.artifact_prefix))
    except NotImplementedError:
        local = Path(settings.VAR_DIR) / "models" / "router" / version.name
        for name in ARTIFACT_FILES:
            target = local / name
            if not target.exists():
                local.mkdir(parents=True, exist_ok=True)
                with default_storage.open(f"{version.artifact_prefix}/{name}", "rb") as src:
                    target.write_bytes(src.read())
        return local


def _store(directory: Path, name: str) -> str:
    prefix = _prefix(name)
    for file_name in ARTIFACT_FILES:
        path = f"{prefix}/{file_name}"
        if default_storage.exists(path):
            default_storage.delete(path)
        default_storage.save(path, ContentFile((directory / file_name).read_bytes()))
    return prefix


def router_version_model(version: RouterVersion) -> RouterModel:
    directory = router_version_local_dir(version=version)
    return router_model_load(version=version.name, directory=directory)


# --- evaluation -----------------------------------------------------------------------------------


def eval_part_rows() -> list[Any]:
    """The evaluation part every version is compared on (``ROUTER_EVAL_PART``: a path,
    default the shipped ``intents_eval.jsonl``)."""
    from chat.assistant.router_training import dataset_load, dataset_load_path

    path = str(settings.ROUTER_EVAL_PART or "")
    return dataset_load_path(Path(path)) if path else dataset_load("eval")


@lru_cache(maxsize=8)
def _vectors_cached(texts: tuple[str, ...]) -> np.ndarray:
    from chat.assistant.embeddings import embed_texts

    vectors = embed_texts(list(texts))
    vectors.setflags(write=False)
    return vectors


def texts_embed(texts: Sequence[str]) -> np.ndarray:
    """MiniLM vectors of a data set (kept in memory: the evaluation part is embedded
    once per process however many versions are compared on it)."""
    return _vectors_cached(tuple(texts))


@dataclass(frozen=True)
class Figures:
    version: str
    precision: float
    recall: float
    accuracy: float
    fingerprint: str


def _evaluate(model: RouterModel, rows: Sequence[Any]) -> Any:
    from chat.assistant.router_training import router_evaluate

    return router_evaluate(
        model, part="eval", rows=rows, vectors=texts_embed([row.text for row in rows])
    )


def _apply_evaluation(version: RouterVersion, evaluation: Any) -> None:
    version.eval_precision = evaluation.escalate_precision
    version.eval_recall = evaluation.escalate_recall
    version.eval_accuracy = evaluation.accuracy
    version.eval_fingerprint = evaluation.fingerprint
    version.eval_critical_missed = len(evaluation.critical_missed)
    version.eval_report = {
        "per_class": evaluation.per_class,
        "confusion": evaluation.confusion,
        "critical_missed": evaluation.critical_missed[:50],
        "rows": evaluation.rows,
    }


def _figures_now(version: RouterVersion, rows: Sequence[Any], fingerprint: str) -> Figures:
    """The version's figures on the current evaluation part: stored ones when they were
    measured on it, else measured now (and stored)."""
    if version.eval_fingerprint != fingerprint:
        _apply_evaluation(version, _evaluate(router_version_model(version), rows))
        version.full_clean(validate_constraints=False)
        version.save(
            update_fields=[
                "eval_precision",
                "eval_recall",
                "eval_accuracy",
                "eval_fingerprint",
                "eval_critical_missed",
                "eval_report",
            ]
        )
    return Figures(
        version=version.name,
        precision=version.eval_precision,
        recall=version.eval_recall,
        accuracy=version.eval_accuracy,
        fingerprint=version.eval_fingerprint,
    )


# --- versions -------------------------------------------------------------------------------------


def router_version_register_shipped() -> RouterVersion:
    """The row of the version that ships with the code (live when nothing else is), with
    the figures recorded when it was built. Idempotent."""
    import json

    meta = json.loads((SHIPPED_DIR / SHIPPED_VERSION / META).read_text())
    figures = meta["evaluation"]
    version, _ = RouterVersion.objects.get_or_create(
        name=SHIPPED_VERSION,
        defaults={
            "source": RouterVersion.Source.SHIPPED,
            "is_live": not RouterVersion.objects.filter(is_live=True).exists(),
            "eval_precision": figures["escalate_precision"],
            "eval_recall": figures["escalate_recall"],
            "eval_accuracy": figures["accuracy"],
            "eval_fingerprint": figures["fingerprint"],
            "eval_critical_missed": figures["critical_missed"],
            "train_rows": meta["training"]["rows"],
        },
    )
    return version


def version_name_new(now: dt.datetime | None = None) -> str:
    return f"router-{(now or timezone.now()):%Y%m%d-%H%M%S}"


def router_version_build(
    *,
    name: str,
    directory: Path,
    include_agent_rows: bool = True,
    base_rows: Sequence[Any] | None = None,
    agent_rows: Sequence[Any] | None = None,
    eval_rows: Sequence[Any] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[RouterModel, Any, int]:
    """Train ``name`` into ``directory`` from the shipped training data (or
    ``base_rows``), plus the rows people labelled unless ``include_agent_rows`` is
    False, and evaluate it on the evaluation part; the figures are written into its
    ``meta.json``. Returns (model, evaluation, number of people's rows used). No
    database writes.

    ``agent_rows`` and ``eval_rows`` (``LabelledText``) replace the people's rows read
    from the database and the evaluation part read from the settings: a training run's
    child process passes both and reads no database at all. People's rows whose text is
    in the evaluation part are left out either way.

    With no people's rows this reproduces the shipped version (see
    ``chat.assistant.router_training``).
    """
    import json

    from chat.assistant.embeddings import MODEL_NAME
    from chat.assistant.router_training import LabelledText, router_train, training_rows

    rows = list(base_rows) if base_rows is not None else training_rows()
    eval_rows = list(eval_rows) if eval_rows is not None else eval_part_rows()
    people: list[LabelledText] = []
    if include_agent_rows:
        held_out = {row.text.strip().lower() for row in eval_rows}
        labelled = (
            agent_rows
            if agent_rows is not None
            else [LabelledText(text=e.text, label=e.label) for e in intent_examples_for_training()]
        )
        people = [
            LabelledText(text=row.text, label=row.label)
            for row in labelled
            if row.text.strip().lower() not in held_out
        ]
    progress(f"embedding {len(rows) + len(people)} training rows")
    all_rows = [*rows, *people]
    blocks = [texts_embed([r.text for r in rows])]
    if people:
        blocks.append(texts_embed([r.text for r in people]))
    vectors = np.vstack(blocks)
    model = router_train(
        rows=all_rows,
        vectors=vectors,
        version=name,
        directory=directory,
        embedding_model=MODEL_NAME,
        extra={"shipped_rows": len(rows), "agent_rows": len(people)},
        progress=progress,
    )
    progress(f"evaluating on {len(eval_rows)} evaluation rows")
    evaluation = _evaluate(model, eval_rows)
    meta = json.loads((directory / META).read_text())
    meta["evaluation"] = {
        "part": "eval",
        "rows": evaluation.rows,
        "fingerprint": evaluation.fingerprint,
        "escalate_precision": evaluation.escalate_precision,
        "escalate_recall": evaluation.escalate_recall,
        "accuracy": evaluation.accuracy,
        "critical_missed": len(evaluation.critical_missed),
    }
    (directory / META).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return RouterModel(directory), evaluation, len(people)


def router_version_train(
    *,
    name: str = "",
    created_by: User | None = None,
    include_agent_rows: bool = True,
    base_rows: Sequence[Any] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> RouterVersion:
    """Train, evaluate and keep a new version (not live: see
    ``router_version_make_live``). Minutes of CPU: call it from a command or a worker.
    ``base_rows`` replaces the shipped training data (a training run on another set)."""
    name = name or version_name_new()
    if name == SHIPPED_VERSION or RouterVersion.objects.filter(name=name).exists():
        raise Conflict(f"A router version named {name} exists already.", code="exists")
    with tempfile.TemporaryDirectory(prefix="router-train-") as scratch:
        directory = Path(scratch) / name
        _, evaluation, people = router_version_build(
            name=name,
            directory=directory,
            include_agent_rows=include_agent_rows,
            base_rows=base_rows,
            progress=progress,
        )
        return router_version_keep(
            name=name,
            directory=directory,
            evaluation=evaluation,
            agent_rows=people,
            created_by=created_by,
        )


def router_version_keep(
    *,
    name: str,
    directory: Path,
    evaluation: Any,
    agent_rows: int,
    created_by: User | None = None,
) -> RouterVersion:
    """Keep the version ``router_version_build`` wrote to ``directory`` (its files go to
    storage under ``router/versions/<name>/``) with its ``evaluation`` on the evaluation
    part. Not live: see ``router_version_make_live``."""
    if name == SHIPPED_VERSION or RouterVersion.objects.filter(name=name).exists():
        raise Conflict(f"A router version named {name} exists already.", code="exists")
    import json

    prefix = _store(directory, name)
    meta = json.loads((directory / META).read_text())
    version = RouterVersion(
        name=name,
        source=RouterVersion.Source.TRAINED,
        artifact_prefix=prefix,
        train_rows=int(meta["training"]["shipped_rows"]),
        agent_rows=agent_rows,
        created_by=created_by,
    )
    _apply_evaluation(version, evaluation)
    version.full_clean(validate_constraints=False)
    version.save()
    return version


def _refusal(new: Figures, live: Figures) -> str:
    worse = []
    if new.precision < live.precision:
        worse.append(f"precision {new.precision:.3f} < {live.precision:.3f}")
    if new.recall < live.recall:
        worse.append(f"recall {new.recall:.3f} < {live.recall:.3f}")
    return (
        f"{new.version} evaluates worse than the live {live.version} on escalate-or-not "
        f"({', '.join(worse)}); it stays off."
    )


@dataclass(frozen=True)
class RouterComparison:
    """A version's escalate-or-not figures beside the live version's, both on the
    current evaluation part."""

    candidate: Figures
    live: Figures

    @property
    def at_least_as_good(self) -> bool:
        return (
            self.candidate.precision >= self.live.precision
            and self.candidate.recall >= self.live.recall
        )

    def refusal(self) -> str:
        return _refusal(self.candidate, self.live)


def _routing(versions: dict[int, RouterVersion]) -> RouterVersion:
    live = next((v for v in versions.values() if v.is_live), None)
    return live or next(v for v in versions.values() if v.name == SHIPPED_VERSION)


def router_version_routing(*, lock: bool = False) -> RouterVersion:
    """The version that routes turns now: the live one, else the shipped one (its row
    is registered if missing). With ``lock``, every version's row is locked (call it in
    a transaction), as ``router_version_make_live`` does."""
    router_version_register_shipped()
    versions = RouterVersion.objects.order_by("pk")
    if lock:
        versions = versions.select_for_update()
    return _routing({v.pk: v for v in versions})


def router_version_compare(*, version: RouterVersion) -> RouterComparison:
    """``version`` against the version routing now, on the current evaluation part.
    Versions measured on another part are measured again first (and their figures
    stored). The rule ``router_version_make_live`` applies is ``at_least_as_good``."""
    rows = eval_part_rows()
    from chat.assistant.router_training import rows_fingerprint

    fingerprint = rows_fingerprint(rows)
    live = router_version_routing()
    return RouterComparison(
        candidate=_figures_now(version, rows, fingerprint),
        live=_figures_now(live, rows, fingerprint),
    )


@transaction.atomic
def router_version_make_live(
    *, version: RouterVersion, by: User | None, force: bool = False
) -> RouterVersion:
    """Make ``version`` the router of every turn (within ``ROUTER_REFRESH_SECONDS``).

    Refused with ``RouterVersionRefused`` (its message gives both versions' numbers)
    unless its escalate-or-not precision and recall on the evaluation part are both at
    least the live version's. Versions measured on another evaluation part are measured
    again first. Locks the versions' rows, so two people making versions live at once
    end with exactly one live.

    ``force`` skips the comparison: the caller has decided, and keeps why (a deployment
    an admin forced with a written reason, or a rollback to the version that was live
    before: ``training.services.deployments``).
    """
    rows = eval_part_rows()
    from chat.assistant.router_training import rows_fingerprint

    fingerprint = rows_fingerprint(rows)
    router_version_register_shipped()
    versions = {v.pk: v for v in RouterVersion.objects.select_for_update().order_by("pk")}
    candidate = versions[version.pk]
    live = _routing(versions)
    if live.pk == candidate.pk and candidate.is_live:
        return candidate
    if not force:
        comparison = RouterComparison(
            candidate=_figures_now(candidate, rows, fingerprint),
            live=_figures_now(live, rows, fingerprint),
        )
        if not comparison.at_least_as_good:
            raise RouterVersionRefused(comparison.refusal())
    if live.is_live:
        live.is_live = False
        live.save(update_fields=["is_live"])
    candidate.is_live = True
    candidate.made_live_at = timezone.now()
    candidate.made_live_by = by
    candidate.save(update_fields=["is_live", "made_live_at", "made_live_by"])
    transaction.on_commit(router_forget_live)
    return candidate
