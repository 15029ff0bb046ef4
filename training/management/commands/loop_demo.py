"""``manage.py loop_demo``: the learning loop end to end, offline, with figures.

See ``training.loop_demo`` for the steps. The last line printed is one JSON object with
the held-out figures before and after.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from training import loop_demo as demo


class Command(BaseCommand):
    help = (
        "Run the learning loop offline: simulated traffic, sampling, simulated reviewers' "
        "labels, a snapshot, a retriever-adapter run, approval, deployment through the "
        "gate, and the held-out questions asked before and after."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--traffic", type=int, default=0, help="Only the first N training questions."
        )
        parser.add_argument(
            "--held-out", type=int, default=0, help="Only the first N held-out questions."
        )
        parser.add_argument("--epochs", type=float, default=None)
        parser.add_argument(
            "--top-layers",
            type=int,
            default=None,
            help="LoRA on the encoder's top N layers only (0: every layer; default: the preset's).",
        )
        parser.add_argument(
            "--rollback",
            action="store_true",
            help="Roll the adapter back at the end (default: it stays live).",
        )
        parser.add_argument(
            "--no-memory",
            action="store_true",
            help="Skip the answer-memory step (approving the reviewers' better answers).",
        )

    def say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def handle(self, *args: Any, **options: Any) -> None:
        from chat.assistant.adapters import adapter_forget
        from chat.assistant.embeddings import MODEL_NAME
        from chat.assistant.memory import memory_forget
        from chat.models import Article
        from training.models import AdapterDeployment, TrainingRun
        from training.services.deployments import (
            DeploymentGateRefused,
            adapter_deploy,
            adapter_rollback,
        )
        from training.services.execution import run_execute
        from training.services.runs import run_approve, run_create

        started = time.monotonic()
        if not Article.objects.exists():
            self.say("0. Demo users and help-centre articles (load_demo) ...")
        quiet = io.StringIO()
        call_command("load_demo", verbosity=0, stdout=quiet)  # creates only what is missing
        call_command("reindex_articles", verbosity=0, stdout=quiet)
        admin = demo.demo_admin()
        if admin is None:
            raise CommandError("No admin user: run `manage.py load_demo` first.")
        live = AdapterDeployment.objects.filter(
            kind=AdapterDeployment.Kind.RETRIEVER, slot="", active=True
        ).first()
        if live is not None:
            adapter_rollback(by=admin, kind=AdapterDeployment.Kind.RETRIEVER)
            self.say(
                f"0. Rolled back the live retriever adapter {live.run.adapter_name}: the "
                "'before' figures are the base retriever's."
            )
        adapter_forget()
        revoked = demo.memory_revoke_demo(by=admin)
        if revoked:
            self.say(
                f"0. Revoked {revoked} answers an earlier run approved for the answer memory: "
                "the 'before' figures are without them."
            )
        memory_forget()

        train = demo.train_questions()
        held_out = demo.eval_questions()
        if options["traffic"]:
            train = train[: options["traffic"]]
        if options["held_out"]:
            held_out = held_out[: options["held_out"]]
        train_texts = {demo.normalised(q["question"]) for q in train}
        leaked = [q for q in held_out if demo.normalised(q["question"]) in train_texts]
        if leaked:
            raise CommandError(f"{len(leaked)} held-out questions are in the training set")

        def progress(label: str):
            return lambda n: self.say(f"   {label}: {n} asked")

        self.say(
            f"1. Simulated customer traffic: {len(train)} training questions through the "
            "chat pipeline ..."
        )
        traffic = demo.customers_ask(
            [q["question"] for q in train], label="loop-traffic", progress=progress("traffic")
        )
        statuses: dict[str, int] = {}
        for status, _, _, _ in traffic:
            statuses[status] = statuses.get(status, 0) + 1
        self.say(f"   turns: {statuses}")

        sampled = demo.sample_all()
        self.say(f"2. Sampling: {sampled} answers sent to reviewers ({demo.POLICY_NAME}).")
        labelled = {demo.normalised(q["question"]): q for q in train}
        counts = demo.labels_simulate(labelled=labelled)
        self.say(
            f"3. Labels: {counts['labels']} labels on {counts['items']} answers, "
            f"{counts['better_answers']} better answers; {demo.SIMULATED_REVIEWER_NOTE}."
        )
        snapshot = demo.snapshot_freeze()
        self.say(f"4. Snapshot {snapshot}: {snapshot.row_counts}")
        in_snapshot = demo.snapshot_questions(snapshot)
        overlap = [q for q in held_out if demo.normalised(q["question"]) in in_snapshot]
        if overlap:
            raise CommandError(f"{len(overlap)} held-out questions are in the snapshot's rows")

        self.say(
            f"5. Before: {len(held_out)} held-out questions (questions_eval.jsonl, in no "
            "training row) through the chat pipeline ..."
        )
        before = demo.ask_pass(held_out, label="loop-before", progress=progress("before"))

        hyperparameters: dict[str, Any] = {}
        if options["epochs"] is not None:
            hyperparameters["epochs"] = options["epochs"]
        if options["top_layers"] is not None:
            hyperparameters["lora_top_layers"] = options["top_layers"]
        run = run_create(
            snapshot=snapshot,
            created_by=admin,
            preset="retriever_minilm",
            name="loop demo retriever adapter",
            hyperparameters=hyperparameters,
            enqueue=False,
        )
        self.say(
            f"6. Retriever-adapter run {run.adapter_name} on the training cluster's code path "
            "(supervised child process, inline) ..."
        )
        run_execute(run_id=run.pk)
        run.refresh_from_db()
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise CommandError(f"{run.adapter_name} {run.status}: {run.error}")
        evaluation = run.evaluation
        self.say(
            f"   {run.step} steps; its own evaluation on {evaluation.get('answerable')} "
            "held-out snapshot questions: right article first "
            f"{_pct(evaluation['before'].get('right_article_first'))} -> "
            f"{_pct(evaluation['after'].get('right_article_first'))}, judge mean "
            f"{evaluation['before'].get('mean')} -> {evaluation['after'].get('mean')}"
        )
        run = run_approve(run=run, by=admin)
        deployment: AdapterDeployment | None = None
        try:
            deployment = adapter_deploy(run=run, by=admin)
        except DeploymentGateRefused as exc:
            self.say(f"7. Approved; the deployment gate refused it: {exc}")
        else:
            self.say(f"7. Approved and deployed: {deployment.gate_summary}")
        adapter_forget()

        after = before
        if deployment is not None:
            self.say("8. After: the same held-out questions through the chat pipeline ...")
            after = demo.ask_pass(held_out, label="loop-after", progress=progress("after"))
        memory: demo.PassFigures | None = None
        approved = 0
        if not options["no_memory"]:
            approved = demo.memory_approve(approver=admin, labelled=labelled)
            memory_forget()
            remembered = demo.memory_questions()
            leaked = [q for q in held_out if demo.normalised(q["question"]) in remembered]
            if leaked:
                raise CommandError(f"{len(leaked)} held-out questions are in the answer memory")
            self.say(
                f"9. Answer memory: the demo admin approved {approved} of the reviewers' better "
                "answers (Labels > 'Approve the better answers for the answer memory'); the "
                "same held-out questions through the chat pipeline again ..."
            )
            memory = demo.ask_pass(held_out, label="loop-memory", progress=progress("memory"))
        # "after" is the assistant after the whole loop: the deployed adapter and, unless
        # --no-memory, the answer memory (both are what the loop learnt); "after_adapter"
        # is the adapter alone.
        final = memory if memory is not None else after
        figures: dict[str, Any] = {}
        for suffix, passed in (("before", before), ("after", final), ("after_adapter", after)):
            figures[f"right_article_{suffix}"] = round(passed.right_article_first(), 4)
            figures[f"wrong_first_{suffix}"] = round(1 - passed.right_article_first(), 4)
            figures[f"judge_mean_{suffix}"] = round(passed.judge_mean(), 3)
            figures[f"share_above_3_{suffix}"] = round(passed.share_above_3(), 4)
            figures[f"honest_dont_know_{suffix}"] = round(passed.honest_dont_know(), 4)
        figures.update(
            {
                "memory_answers_approved": approved,
                "memory_answered": len(memory.from_memory()),
                "memory_answered_right_article": sum(
                    a.cited_first == a.want for a in memory.from_memory() if a.want
                ),
                "memory_answered_unanswerable": sum(1 for a in memory.from_memory() if not a.want),
            }
            if memory is not None
            else {}
        )
        figures.update(
            {
                "held_out_questions": len(held_out),
                "held_out_answerable": len(before.answerable),
                "training_questions": len(train),
                "run": run.adapter_name,
                "deployed": deployment is not None,
                "embedding_model": MODEL_NAME,
                "seconds": round(time.monotonic() - started),
            }
        )
        self.say("")
        self.say(f"Held-out questions ({len(held_out)}, {len(before.answerable)} answerable):")
        columns = ["before", "adapter"] + (["+memory"] if memory is not None else [])
        self.say(f"{'':34}" + "".join(f"{c:>10}" for c in columns))
        rows: list[tuple[str, str, Callable[[float], str]]] = [
            ("right article cited first", "right_article", _pct),
            ("right article NOT cited first", "wrong_first", _pct),
            ("judge mean (1-5)", "judge_mean", lambda v: f"{v:.2f}"),
            ("judge share above 3", "share_above_3", _pct),
            ("honest 'I don't know'", "honest_dont_know", _pct),
        ]
        for label, key, show in rows:
            values = [
                float(figures[f"{key}_{c}"])
                for c in ("before", "after_adapter", *(["after"] if memory is not None else []))
            ]
            self.say(f"{label:34}" + "".join(f"{show(v):>10}" for v in values))
        changed = [
            (b, a)
            for b, a in zip(before.asked, after.asked, strict=True)
            if b.want and (b.cited_first == b.want) != (a.cited_first == a.want)
        ]
        fixed = sum(a.cited_first == a.want for _, a in changed)
        self.say(
            f"Questions whose first citation the adapter changed: {fixed} now right, "
            f"{len(changed) - fixed} now wrong."
        )
        if memory is not None:
            rows_memory = memory.from_memory()
            self.say(
                f"Answered from the answer memory: {len(rows_memory)} of {len(held_out)} held-out "
                f"questions ({figures['memory_answered_right_article']} with the right article, "
                f"{figures['memory_answered_unanswerable']} that no article answers); the "
                "approved answers stay (revoke them in Chat > Support answers)."
            )
        if deployment is not None and options["rollback"]:
            adapter_rollback(by=admin, kind=AdapterDeployment.Kind.RETRIEVER)
            adapter_forget()
            self.say(f"Rolled back {run.adapter_name}: the base retriever answers again.")
        elif deployment is not None:
            self.say(
                f"{run.adapter_name} stays live for every conversation; roll it back from "
                "the admin (Adapter deployments) or the API."
            )
        self.say(json.dumps(figures))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
