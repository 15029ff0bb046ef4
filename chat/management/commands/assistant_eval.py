"""How often the assistant cites the right article first, and says honestly that it does
not know when the knowledge base cannot answer (docs/assistant.md)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat.assistant.contract import BAND_CONFIDENT, BAND_DONT_KNOW, BAND_HEDGED
from chat.assistant.evaluation import (
    Report,
    calibration_fit,
    demo_index,
    evaluate,
    percent,
    questions_load,
)
from chat.assistant.knowledge import calibration_forget, knowledge_index
from chat.assistant.providers import embedder_current


class Command(BaseCommand):
    help = (
        "Run the shipped questions through the assistant's retrieval, no-answer decision "
        "and answer step; print right-article-first, top-3 and honest don't-know rates "
        "(last line: JSON)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--set", dest="name", choices=["eval", "dev"], default="eval")
        parser.add_argument(
            "--source",
            choices=["demo", "db"],
            default="demo",
            help="demo: the demo articles indexed in memory (default); db: the current index",
        )
        parser.add_argument(
            "--calibrate",
            action="store_true",
            help="fit the no-answer calibration on the dev and train sets (never eval) and "
            "save it first",
        )
        parser.add_argument(
            "--memory",
            action="store_true",
            help="only the answer memory's calibration table on the dev set (leave-one-out: "
            "each question's evidence stands in for an approved answer)",
        )
        parser.add_argument("--failures", type=int, default=5, help="examples of each failure")
        parser.add_argument("--no-answer-step", action="store_true", help="retrieval only")

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["name"]
        if options["calibrate"] and name != "dev":
            raise CommandError("Calibrate on the dev set only (--set dev): eval is for reporting.")
        if options["memory"]:
            if name != "dev":
                raise CommandError("Calibrate the memory on the dev set only (--set dev).")
            self._memory_table(questions_load(name))
            return
        embedder = embedder_current()
        self.stdout.write(f"Indexing ({options['source']}, {embedder.name}) ...")
        index = (
            demo_index(embedder)
            if options["source"] == "demo"
            else knowledge_index(embedding_model=embedder.name)
        )
        if not index.size:
            raise CommandError("The index is empty: load and embed the articles first.")
        questions = questions_load(name)
        self.stdout.write(
            f"{len(index.slugs)} articles, {index.size} passages; {len(questions)} questions"
        )

        def run(name: str = name, questions: list[dict[str, Any]] = questions) -> Report:
            return evaluate(
                name=name,
                questions=questions,
                index=index,
                embedder=embedder,
                top_k=settings.ASSISTANT_TOP_K,
                answer_step=not options["no_answer_step"],
            )

        report = run()
        if options["calibrate"]:
            # The training questions (another author's, the loop demo's traffic) are fitted
            # on too: twice the questions, and unanswerable ones of other kinds than dev's.
            extra = run("train", questions_load("train"))
            calibration = calibration_fit(reports=[report, extra], embedding_model=embedder.name)
            calibration.save()
            calibration_forget()
            self.stdout.write(
                f"Calibrated: answer threshold {calibration.threshold:.3f}, hedge threshold "
                f"{calibration.hedge_threshold or 0.0:.3f} "
                f"(saved to chat/assistant/retrieval_calibration.json)"
            )
            report = run()
        self._print(report, options["failures"])

    def _memory_table(self, questions: list[dict[str, Any]]) -> None:
        from chat.assistant.memory import memory_calibrate, memory_calibration_set

        question_vectors, answer_vectors = memory_calibration_set(questions)
        grid = [(q, a) for q in (0.7, 0.72, 0.75, 0.78, 0.8) for a in (0.0, 0.55, 0.6, 0.65)]
        rows = memory_calibrate(
            questions=questions,
            question_vectors=question_vectors,
            answer_vectors=answer_vectors,
            grid=grid,
        )
        current = (
            float(settings.ANSWER_MEMORY_MIN_SIMILARITY),
            float(settings.ANSWER_MEMORY_MIN_ANSWER_SIMILARITY),
        )
        out = self.stdout.write
        out(f"Answer memory, leave-one-out on {len(questions)} dev questions")
        out("question>=  answer>=  matched  right article  same answer  unanswerable  precision")
        for row in rows:
            mark = (
                "  <- settings"
                if (row.min_similarity, row.min_answer_similarity) == current
                else ""
            )
            out(
                f"{row.min_similarity:>10.2f} {row.min_answer_similarity:>9.2f} {row.matched:>8} "
                f"{row.right:>14} {row.same_answer:>12} {row.unanswerable:>13} "
                f"{100 * row.precision:>9.1f}%{mark}"
            )

    def _print(self, report: Report, failures: int) -> None:
        figures = report.figures()
        out = self.stdout.write
        out("")
        out(f"Set: {report.name}")
        out(f"  answerable questions          {figures['answerable']}")
        out(
            f"  right article cited first     {percent(figures['right_article_first'])} "
            "(confident or hedged)"
        )
        out(f"  ... in a confident answer     {percent(figures['right_article_first_confident'])}")
        out(f"  ... and its passage first     {percent(figures['right_passage_first'])}")
        out(f"  right article in top 3        {percent(figures['right_article_top3'])}")
        out(f"  ranking alone, top 1          {percent(figures['ranking_top1'])}")
        out(f"  answerable said don't know    {percent(figures['answerable_said_dont_know'])}")
        out(f"  unanswerable questions        {figures['unanswerable']}")
        out(f"  honest (don't know or hedged) {percent(figures['honest'])} (no confident answer)")
        out(f"  ... said don't know           {percent(figures['honest_dont_know'])}")
        out("  bands (confident / hedged / don't know):")
        for label, key in (
            ("answerable", "bands_answerable"),
            ("... right article first", "bands_answerable_right"),
            ("unanswerable", "bands_unanswerable"),
        ):
            bands = figures[key]
            out(
                f"    {label:<27} {bands[BAND_CONFIDENT]:>4} / {bands[BAND_HEDGED]:>4} / "
                f"{bands[BAND_DONT_KNOW]:>4}"
            )
        out(f"  answer quotes the evidence    {percent(figures['answer_quotes_evidence'])}")
        out(
            f"  CPU per question: retrieval {figures['retrieval_cpu_ms_p50']} ms (p50), "
            f"query encoding {figures['query_encode_ms']} ms (batched)"
        )
        out("")
        out("Confusions (wanted -> cited first):")
        for want, got, count in report.confusions():
            out(f"  {count:>3}  {want} -> {got}")
        wrong = [o for o in report.answerable if o.cited_first and o.cited_first != o.want]
        silent = [o for o in report.answerable if o.retrieval.no_answer]
        guessed = [o for o in report.unanswerable if o.band == BAND_CONFIDENT]
        for title, items in (
            ("Wrong article cited first", wrong),
            ("Answerable, but said it does not know", silent),
            ("Unanswerable, but answered confidently", guessed),
        ):
            out("")
            out(f"{title} ({len(items)}):")
            for o in items[:failures]:
                cited = f"{o.cited_first}#{o.passages[0].anchor}" if o.passages else "-"
                out(f"  - {o.question!r}")
                confidence = o.retrieval.top_score
                out(
                    f"    wanted {o.want or '(none)'}; cited {cited}; "
                    f"{o.band}, confidence {confidence:.2f} (thresholds "
                    f"{o.retrieval.hedge_score:.2f} / {o.retrieval.min_score:.2f})"
                )
        out("")
        out(json.dumps(figures, sort_keys=True))
