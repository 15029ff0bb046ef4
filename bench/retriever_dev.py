"""Dev tuning of the retriever adapter (not a test; never reads the eval questions' labels).

    OMP_NUM_THREADS=1 .venv/bin/python bench/retriever_dev.py --variant '{"name": "preset"}' \
        [--variant '{"name": "fused", "hyperparameters": {"fused_weight": 1}}' ...]

Builds the demo knowledge index in memory (as ``manage.py assistant_eval`` does), then the
training rows the loop demo's snapshot would give: every question of
``questions_train.jsonl`` (without the ones that repeat a dev or eval question word for
word) asked of the base retriever and judged as the demo's simulated reviewers do (5 when
the labelled article is cited first or an unanswerable question gets no citation, else 1
with a better answer quoting the dataset's evidence sentence), turned into rows by the
run's own code (``training.services.retriever.rows_from_judgements``). Each variant
(the preset's hyperparameters and LoRA, with the variant's changes) is trained by the
run's own backend (``retriever_backend.train_retriever``, in this process) and evaluated
on ``questions_dev.jsonl`` through the assistant's decision (``knowledge_answer``) and the
local judge: right article cited first (answerable questions), "I don't know" on the
unanswerable ones, judge mean and share above 3. One JSON line per variant.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def normalised(text: str) -> str:
    return " ".join(text.lower().split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", default=[], help="JSON: name, lora, ...")
    parser.add_argument("--out", default="", help="folder for the adapters (default: a temp one)")
    parser.add_argument("--base", action="store_true", help="also report the base encoder")
    parser.add_argument(
        "--evaluate", action="append", default=[], help="an adapter folder to evaluate only"
    )
    parser.add_argument(
        "--plain-replies",
        action="store_true",
        help="judge the bare extractive answer, not the reply the chat sends (a hedged "
        'reply opens with "I\'m not certain ..." and ends with the offer of a person)',
    )
    parser.add_argument(
        "--trace-hedged",
        choices=("default", "yes", "no"),
        default="default",
        help="trace hedged replies to the passage they quote (default: the run's setting)",
    )
    parser.add_argument(
        "--snapshot-split",
        action="store_true",
        help="hold out the loop demo snapshot's share of training questions (split_of), "
        "train on the rest, and also report the run's own evaluation and the gate's verdict",
    )
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    import torch
    from django.conf import settings

    torch.set_num_threads(1)
    from chat.assistant.chain import HEDGE_OPENING, NO_ANSWER_TEXT, PERSON_OFFER_TEXT
    from chat.assistant.contract import BAND_HEDGED
    from chat.assistant.evaluation import demo_index, evaluate, questions_load
    from labeling.judge import judge_scores
    from training.services.presets import PRESETS
    from training.services.retriever import (
        TRACE_HEDGED,
        QuestionEncoder,
        held_out_questions,
        retriever_corpus,
        retriever_evaluate,
        rows_from_judgements,
    )
    from training.services.retriever_backend import train_retriever

    out_root = Path(args.out or tempfile.mkdtemp(prefix="retriever-dev-"))
    out_root.mkdir(parents=True, exist_ok=True)
    index = demo_index(QuestionEncoder())
    dev = questions_load("dev")
    held = {normalised(q["question"]) for q in dev + questions_load("eval")}
    train = [q for q in questions_load("train") if normalised(q["question"]) not in held]
    print(f"# train {len(train)} questions (repeats of dev/eval dropped), dev {len(dev)}")

    started = time.monotonic()
    base_train = evaluate(
        name="train", questions=train, index=index, embedder=QuestionEncoder(), top_k=3
    )
    judgements = []
    for q, outcome in zip(train, base_train.outcomes, strict=True):
        want = q.get("article")
        answer = outcome.answer if outcome.passages and outcome.answer else NO_ANSWER_TEXT
        if answer != NO_ANSWER_TEXT and outcome.band == BAND_HEDGED and not args.plain_replies:
            # What the chat sends (chain.assistant_stream), which the reviewers label.
            answer = f"{HEDGE_OPENING}\n\n{answer}\n\n{PERSON_OFFER_TEXT}"
        if want is None:
            right = outcome.cited_first is None
            better = "" if right else NO_ANSWER_TEXT
        else:
            right = outcome.cited_first == want
            better = "" if right else (q.get("evidence") or "")
        judgements.append({"question": q["question"], "answer": answer, "good": right})
        if better:
            judgements.append({"question": q["question"], "answer": better, "good": True})
    from labeling.services.snapshots import split_of
    from training.loop_demo import SNAPSHOT_TEST_SHARE

    for j in judgements:
        j["split"] = (
            split_of(j["question"], test_share=SNAPSHOT_TEST_SHARE)
            if args.snapshot_split
            else "train"
        )
    trace_hedged = {"yes": True, "no": False}.get(args.trace_hedged, TRACE_HEDGED)
    split_rows = rows_from_judgements(judgements=judgements, index=index, trace_hedged=trace_hedged)
    rows, test_rows = split_rows["train"], split_rows.get("test") or []
    gate_questions = held_out_questions(test_rows=test_rows, index=index)
    corpus = retriever_corpus(index, out_root)
    hedged = sum(o.band == BAND_HEDGED and bool(o.passages) for o in base_train.outcomes)
    print(f"# {hedged} hedged replies of {len(train)}; trace_hedged={trace_hedged}")
    print(
        f"# rows {len(rows)} ({sum(r['positive'] is not None for r in rows)} with a positive, "
        f"{sum(bool(r['negatives']) for r in rows)} with hard negatives); "
        f"held out {len(test_rows)} ({len(gate_questions)} with a positive); "
        f"{time.monotonic() - started:.0f} s"
    )

    def dev_figures(adapter: str) -> dict:
        report = evaluate(
            name="dev",
            questions=dev,
            index=index,
            embedder=QuestionEncoder(adapter_path=adapter),
            top_k=settings.ASSISTANT_TOP_K,
        )
        figures = report.figures()
        verdicts = judge_scores(
            [
                (
                    q["question"],
                    o.answer if o.passages and o.answer else NO_ANSWER_TEXT,
                    q.get("reference_answer") or (None if q.get("article") else NO_ANSWER_TEXT),
                )
                for q, o in zip(dev, report.outcomes, strict=True)
            ]
        )
        scores = [float(v.score) for v in verdicts]
        return {
            "right_article_first": figures["right_article_first"],
            "not_first": round(1 - figures["right_article_first"], 4),
            "ranking_top1": figures["ranking_top1"],
            "honest_dont_know": figures["honest_dont_know"],
            "judge_mean": round(sum(scores) / len(scores), 3),
            "share_above_3": round(sum(s > 3 for s in scores) / len(scores), 3),
            "right": [o.cited_first == o.want for o in report.answerable],
        }

    base = dev_figures("") if args.base or args.variant else None
    if base is not None:
        print(json.dumps({"name": "base", **{k: v for k, v in base.items() if k != "right"}}))
    for folder in args.evaluate:
        figures = dev_figures(folder)
        print(json.dumps({"name": folder, **{k: v for k, v in figures.items() if k != "right"}}))
    preset = PRESETS["retriever_minilm"]
    for raw in args.variant:
        variant = json.loads(raw)
        name = variant["name"]
        hp = {**preset.hyperparameters, "threads": 1, **(variant.get("hyperparameters") or {})}
        lora = {
            "r": preset.lora_r,
            "alpha": preset.lora_alpha,
            "dropout": preset.lora_dropout,
            "target_modules": None,
            **(variant.get("lora") or {}),
        }
        output = out_root / name
        output.mkdir(parents=True, exist_ok=True)
        spec = {
            "rows": {"train": rows},
            "corpus": corpus,
            "hyperparameters": hp,
            "lora": lora,
            "seed": int(variant.get("seed", 0)),
            "output_dir": str(output),
        }
        last: dict = {}

        def emit(event: dict, last: dict = last) -> None:
            if event.get("event") == "metrics":
                last.update(event["metrics"])

        cpu = time.process_time()
        clock = time.monotonic()
        result = train_retriever(spec, emit)
        train_cpu = time.process_time() - cpu
        train_wall = time.monotonic() - clock
        for scale in variant.get("scales") or [1.0]:
            adapter = output / "adapter"
            if scale != 1.0:
                # The LoRA's change scaled by ``scale`` (weight space, between the base
                # encoder and the trained adapter): lora_alpha scaled in a copy.
                adapter = output / f"adapter-x{scale}"
                shutil.copytree(output / "adapter", adapter, dirs_exist_ok=True)
                config_path = adapter / "adapter_config.json"
                config = json.loads(config_path.read_text())
                config["lora_alpha"] = config["lora_alpha"] * scale
                config_path.write_text(json.dumps(config))
            figures = dev_figures(str(adapter))
            flips = {}
            if base is not None:
                pairs = list(zip(base["right"], figures["right"], strict=True))
                flips = {
                    "now_right": sum(a and not b for b, a in pairs),
                    "now_wrong": sum(b and not a for b, a in pairs),
                }
            gate = {}
            if gate_questions:
                # The run's own evaluation and the gate's rule against the base encoder.
                run_eval = retriever_evaluate(
                    questions=gate_questions, adapter_path=str(adapter), index=index
                )
                before, after = run_eval["before"], run_eval["after"]
                keys = ("right_article_first", "mean")
                gate = {
                    "run_eval": {
                        "questions": run_eval["questions"],
                        "before": {k: before[k] for k in keys},
                        "after": {k: after[k] for k in keys},
                    },
                    "gate_passes": all(after[k] >= before[k] for k in keys)
                    and any(after[k] > before[k] for k in keys),
                }
            print(
                json.dumps(
                    {
                        "name": name if scale == 1.0 else f"{name} x{scale}",
                        **gate,
                        **{k: v for k, v in figures.items() if k != "right"},
                        **flips,
                        "steps": result["steps"],
                        "train_cpu_s": round(train_cpu),
                        "train_wall_s": round(train_wall),
                        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                        "last_metrics": {k: round(float(v), 4) for k, v in last.items()},
                        "adapter": str(adapter),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
