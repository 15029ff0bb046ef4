"""Training platform overhead and a learnable synthetic preference, on the tiny model.

Not a test. Two parts, both offline on CPU:

1. Overhead: the same DPO training (same data, LoRA, hyperparameters, seed) run
   (a) through the platform: ``training_run_execute_task`` -> spec from the snapshot ->
       child process -> per-step metrics stored -> artifacts stored with a manifest;
   (b) as a plain TRL script in a subprocess (load, DPOTrainer, train, save adapter).
   Prints the wall times (median of --repeats, alternating) and the ratio (goal <= 1.05).
2. Learnable preference: answers are sampled from the starter model; a programmatic
   labeler prefers the ones that end (EOS) within the length budget over the ones cut
   off. A reward_model run learns it, a PPO run optimises against it (guards off, to
   show the raw curve); the mean reward (PPO ``objective/scores``, the blog's
   reward/mean) per step is printed and written to docs/training_reward_curve.svg / .md.
3. ``--online``: the same reward model rewards a GRPO, an RLOO and a PPO run with their
   tiny presets and the default guards; prints each run's outcome (or the guard's stop
   reason), its reward over the first and last steps, KL per answer and answer length.

    .venv/bin/python bench/training_overhead.py [--repeats 3] [--dpo-steps 120]
        [--skip-overhead] [--skip-curve] [--online]

Runs against a throwaway SQLite database and media folder in a temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="loopdesk-training-bench-"))
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
os.environ["DATABASE_URL"] = f"sqlite:///{WORK / 'bench.sqlite3'}"
os.environ.pop("REDIS_URL", None)
os.environ["MEDIA_ROOT"] = str(WORK / "media")
os.environ["TRAINING_OUTPUT_DIR"] = str(WORK / "training")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key-0123456789abcdef")

PLAIN_DPO = r"""
import json, sys, time
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

spec = json.load(open(sys.argv[1]))
if spec["hyperparameters"].get("threads"):
    torch.set_num_threads(spec["hyperparameters"]["threads"])
base = spec["base_model_path"]
tokenizer = AutoTokenizer.from_pretrained(base)
tokenizer.padding_side = "right"
model = AutoModelForCausalLM.from_pretrained(base)
def prompt(q):
    return tokenizer.apply_chat_template([{"role": "user", "content": q}],
                                         add_generation_prompt=True, tokenize=False)
data = [{"prompt": prompt(r["prompt"]), "chosen": " " + r["chosen"],
         "rejected": " " + r["rejected"]} for r in spec["rows"]["train"]]
hp = spec["hyperparameters"]
args = DPOConfig(output_dir=spec["output_dir"] + "/trainer", learning_rate=hp["learning_rate"],
                 per_device_train_batch_size=hp["batch_size"], max_steps=hp["max_steps"],
                 num_train_epochs=hp["epochs"], seed=spec["seed"], logging_steps=1,
                 save_strategy="no", report_to=[], disable_tqdm=True,
                 gradient_checkpointing=False, dataloader_num_workers=0, use_cpu=True,
                 bf16=False, fp16=False, beta=hp["beta"], max_length=256)
lora = LoraConfig(r=spec["lora"]["r"], lora_alpha=spec["lora"]["alpha"],
                  lora_dropout=spec["lora"]["dropout"], target_modules="all-linear",
                  bias="none", task_type="CAUSAL_LM")
trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=Dataset.from_list(data),
                     processing_class=tokenizer, peft_config=lora)
trainer.train()
trainer.model.save_pretrained(spec["output_dir"] + "/adapter")
tokenizer.save_pretrained(spec["output_dir"] + "/adapter")
"""


def setup_django() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def starter_model() -> Path:
    from django.conf import settings

    path = Path(settings.HF_BASE_MODEL_PATH)
    if (path / "config.json").exists():
        return path
    from training.services.starter import knowledge_base_texts, starter_model_build

    print("building the starter model (no downloads)...", flush=True)
    return starter_model_build(
        output_dir=WORK / "starter", texts=knowledge_base_texts(base_dir=ROOT), steps=300
    )


def knowledge_pairs() -> list[dict]:
    questions = json.loads((ROOT / "chat" / "demo" / "questions.json").read_text())
    return [
        {
            "prompt": q["question"],
            "chosen": q["reference_answer"],
            "rejected": "I don't know, please ask someone else.",
            "split": "test" if i % 9 == 0 else "train",
        }
        for i, q in enumerate(questions)
    ]


def overhead(base: Path, repeats: int, steps: int) -> dict:
    from labeling.services import snapshot_create_from_rows
    from training.models import TrainingRun
    from training.services.execution import spec_build
    from training.services.runs import run_create
    from training.tasks import training_run_execute_task

    snapshot = snapshot_create_from_rows(name="bench-overhead", rows={"pair": knowledge_pairs()})
    hp = {
        "learning_rate": 1e-3,
        "batch_size": 8,
        "epochs": 1,
        "max_steps": steps,
        "beta": 0.1,
        "eval_prompts": 0,  # the plain script does not evaluate either
        "threads": 1,  # both sides alike; the machine's 2 cores are shared
    }
    platform_times, plain_times, platform_cpu, plain_cpu = [], [], [], []
    for i in range(repeats):
        run = run_create(
            snapshot=snapshot,
            preset="tiny_cpu_dpo",
            base_model=str(base),
            hyperparameters=hp,
            enqueue=False,
            lora_target_modules=[],
        )
        started, cpu = time.perf_counter(), _cpu_seconds()
        training_run_execute_task(run.pk)
        platform_times.append(time.perf_counter() - started)
        platform_cpu.append(_cpu_seconds() - cpu)
        run.refresh_from_db()
        assert run.status == TrainingRun.Status.SUCCEEDED, run.error
        metrics = run.metrics.count()

        plain_dir = WORK / f"plain-{i}"
        plain_dir.mkdir()
        spec = spec_build(run=run, work_dir=plain_dir)
        spec_path = plain_dir / "spec.json"
        spec_path.write_text(json.dumps(spec))
        started, cpu = time.perf_counter(), _cpu_seconds()
        subprocess.run(
            [sys.executable, "-c", PLAIN_DPO, str(spec_path)],
            check=True,
            cwd=plain_dir,
            capture_output=True,
        )
        plain_times.append(time.perf_counter() - started)
        plain_cpu.append(_cpu_seconds() - cpu)
        print(
            f"  repeat {i + 1}: platform {platform_times[-1]:.1f}s wall "
            f"{platform_cpu[-1]:.1f}s CPU ({metrics} metric rows stored), "
            f"plain TRL {plain_times[-1]:.1f}s wall {plain_cpu[-1]:.1f}s CPU",
            flush=True,
        )
    platform, plain = statistics.median(platform_times), statistics.median(plain_times)
    cpu_platform, cpu_plain = statistics.median(platform_cpu), statistics.median(plain_cpu)
    return {
        "platform_s": platform,
        "plain_s": plain,
        "ratio": platform / plain,
        "cpu_platform_s": cpu_platform,
        "cpu_plain_s": cpu_plain,
        "cpu_ratio": cpu_platform / cpu_plain,
        "steps": steps,
    }


def _cpu_seconds() -> float:
    """CPU time of this process (the supervising worker) plus its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def preference_pairs(base: Path, samples_per_question: int = 6) -> list[dict]:
    """Sampled answers: those that end within 24 tokens are preferred to cut-off ones."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.services.trl_backend import prompt_text

    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(base).eval()
    questions = json.loads((ROOT / "chat" / "demo" / "questions.json").read_text())
    prompts = [prompt_text(tokenizer, q["question"]) for q in questions]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(0)
    samples = []
    for _ in range(samples_per_question):
        with torch.no_grad():
            out = model.generate(
                **batch,
                max_new_tokens=24,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[:, batch["input_ids"].shape[1] :]
        samples.append(tokenizer.batch_decode(new, skip_special_tokens=False))
    eos, pad = tokenizer.eos_token, tokenizer.pad_token
    pairs = []
    for i, question in enumerate(questions):
        texts = [samples[k][i] for k in range(samples_per_question)]
        ended = [t.split(eos)[0].strip() for t in texts if eos in t]
        cut = [t.replace(pad, "").strip() for t in texts if eos not in t]
        for chosen, rejected in zip(ended, cut, strict=False):
            split = "test" if len(pairs) % 8 == 0 else "train"
            pairs.append(
                {
                    "prompt": question["question"],
                    "chosen": chosen,
                    "rejected": rejected,
                    "split": split,
                }
            )
    # Questions without a pair still serve as PPO prompts.
    return pairs


def curve(base: Path) -> dict:
    from labeling.services import snapshot_create_from_rows
    from training.models import TrainingRun
    from training.services.runs import run_create
    from training.tasks import training_run_execute_task

    pairs = preference_pairs(base)
    snapshot = snapshot_create_from_rows(name="bench-preference", rows={"pair": pairs})
    reward = run_create(
        snapshot=snapshot, preset="tiny_cpu_reward_model", base_model=str(base), enqueue=False
    )
    started = time.perf_counter()
    training_run_execute_task(reward.pk)
    reward_s = time.perf_counter() - started
    reward.refresh_from_db()
    assert reward.status == TrainingRun.Status.SUCCEEDED, reward.error
    ppo = run_create(
        snapshot=snapshot,
        preset="tiny_cpu_ppo",
        base_model=str(base),
        reward_run=reward,
        enqueue=False,
        # Guards off: this shows the raw curve (the default KL guard stops it early).
        hyperparameters={"eval_prompts": 8, "guard_max_kl": None, "guard_max_length_drift": None},
    )
    started = time.perf_counter()
    training_run_execute_task(ppo.pk)
    ppo_s = time.perf_counter() - started
    ppo.refresh_from_db()
    assert ppo.status == TrainingRun.Status.SUCCEEDED, ppo.error
    series = list(
        ppo.metrics.filter(name="objective/scores").order_by("step").values_list("step", "value")
    )
    kl = dict(ppo.metrics.filter(name="objective/kl").values_list("step", "value"))
    return {
        "pairs": len(pairs),
        "pair_accuracy": reward.evaluation.get("pair_accuracy"),
        "reward_s": reward_s,
        "ppo_s": ppo_s,
        "series": series,
        "kl": kl,
        "evaluation": ppo.evaluation,
    }


def online(base: Path) -> list[dict]:
    """GRPO, RLOO and PPO (tiny presets, default guards) against the learned preference."""
    from labeling.services import snapshot_create_from_rows
    from training.models import TrainingRun
    from training.services.runs import run_create
    from training.tasks import training_run_execute_task

    pairs = preference_pairs(base)
    snapshot = snapshot_create_from_rows(name="bench-online", rows={"pair": pairs})
    reward = run_create(
        snapshot=snapshot, preset="tiny_cpu_reward_model", base_model=str(base), enqueue=False
    )
    training_run_execute_task(reward.pk)
    reward.refresh_from_db()
    assert reward.status == TrainingRun.Status.SUCCEEDED, reward.error
    print(f"reward model: held-out pair accuracy {reward.evaluation.get('pair_accuracy')}")
    results = []
    for preset, headline in (
        ("tiny_cpu_grpo", "reward"),
        ("tiny_cpu_rloo", "reward"),
        ("tiny_cpu_ppo", "objective/scores"),
    ):
        run = run_create(
            snapshot=snapshot,
            preset=preset,
            base_model=str(base),
            reward_run=reward,
            enqueue=False,
            hyperparameters={"eval_prompts": 8, "threads": 1},
        )
        started, cpu = time.perf_counter(), _cpu_seconds()
        training_run_execute_task(run.pk)
        wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
        run.refresh_from_db()

        def series(name: str, run: TrainingRun = run) -> list[float]:
            rows = run.metrics.filter(name=name).order_by("step")
            return list(rows.values_list("value", flat=True))

        scores = series(headline)
        kl, length = series("guard/answer_kl"), series("guard/mean_length")
        first, last = scores[:5], scores[-5:]
        result = {
            "preset": preset,
            "status": run.status,
            "error": run.error,
            "steps": run.step,
            "wall_s": wall,
            "cpu_s": cpu,
            "reward_first5": statistics.mean(first) if first else None,
            "reward_last5": statistics.mean(last) if last else None,
            "kl_last": kl[-1] if kl else None,
            "kl_max": max(kl) if kl else None,
            "length_first": length[0] if length else None,
            "length_last": length[-1] if length else None,
            "evaluation": {k: run.evaluation.get(k) for k in ("before", "after", "method")},
        }
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


def svg_curve(series: list[tuple[int, float]], path: Path) -> None:
    w, h, pad = 560, 240, 40
    xs = [s for s, _ in series]
    ys = [v for _, v in series]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1

    def sx(x):
        return pad + (x - x0) / (x1 - x0) * (w - 2 * pad)

    def sy(y):
        return h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad)

    d = " ".join(f"{'L' if i else 'M'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(series))
    path.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">\n'
        f'<rect width="{w}" height="{h}" fill="white"/>\n'
        f'<text x="{pad}" y="18" font-size="13">PPO objective/scores (reward/mean) per step, '
        f"tiny model, CPU</text>\n"
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#888"/>\n'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#888"/>\n'
        f'<text x="4" y="{sy(y1) + 4:.0f}">{y1:.2f}</text>\n'
        f'<text x="4" y="{sy(y0) + 4:.0f}">{y0:.2f}</text>\n'
        f'<text x="{w - pad}" y="{h - pad + 16}" text-anchor="end">step {x1}</text>\n'
        f'<text x="{pad}" y="{h - pad + 16}">step {x0}</text>\n'
        f'<path d="{d}" fill="none" stroke="#2f6fb0" stroke-width="2"/>\n'
        "</svg>\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dpo-steps", type=int, default=120)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-curve", action="store_true")
    parser.add_argument("--online", action="store_true")
    args = parser.parse_args()
    setup_django()
    base = starter_model()
    print(f"base model: {base}; work dir: {WORK}", flush=True)

    if not args.skip_overhead:
        print(f"overhead: DPO, {args.dpo_steps} steps, batch 8, LoRA r8", flush=True)
        result = overhead(base, args.repeats, args.dpo_steps)
        print(
            f"platform {result['platform_s']:.1f}s vs plain TRL {result['plain_s']:.1f}s "
            f"(median of {args.repeats}): overhead ratio {result['ratio']:.3f} (goal <= 1.05); "
            f"CPU {result['cpu_platform_s']:.1f}s vs {result['cpu_plain_s']:.1f}s: "
            f"ratio {result['cpu_ratio']:.3f}",
            flush=True,
        )
        print(
            json.dumps(
                {
                    "bench": "training_overhead",
                    "repeats": args.repeats,
                    **{k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()},
                }
            ),
            flush=True,
        )

    if not args.skip_curve:
        print("learnable preference: reward model then PPO through the platform", flush=True)
        result = curve(base)
        series = result["series"]
        print(
            f"pairs {result['pairs']}, reward model held-out pair accuracy "
            f"{result['pair_accuracy']}, reward run {result['reward_s']:.0f}s, "
            f"PPO run {result['ppo_s']:.0f}s",
            flush=True,
        )
        rows = ["| steps | mean objective/scores | mean objective/kl |", "|---|---|---|"]
        for start in range(0, len(series), 5):
            chunk = series[start : start + 5]
            steps = f"{chunk[0][0]}-{chunk[-1][0]}"
            mean_score = statistics.mean(v for _, v in chunk)
            mean_kl = statistics.mean(result["kl"].get(s, 0.0) for s, _ in chunk)
            rows.append(f"| {steps} | {mean_score:.2f} | {mean_kl:.2f} |")
        table = "\n".join(rows)
        print(table)
        evaluation = result["evaluation"]
        print(
            f"judge before {evaluation.get('before')} after {evaluation.get('after')} "
            f"({evaluation.get('method')})"
        )
        for row in evaluation.get("rows", [])[:4]:
            print(f"  Q: {row['prompt']}\n    before: {row['before']}\n    after:  {row['after']}")
        docs = ROOT / "docs"
        svg_curve(series, docs / "training_reward_curve.svg")
        (docs / "training_reward_curve.md").write_text(
            "# PPO mean reward per step (generated by bench/training_overhead.py)\n\n"
            + table
            + "\n\n![curve](training_reward_curve.svg)\n"
        )

    if args.online:
        print("online RL: GRPO, RLOO, PPO against the learned preference (guards on)")
        for result in online(base):
            outcome = result["status"] if not result["error"] else result["error"]
            print(
                f"| {result['preset']} | {outcome} | {result['steps']} | "
                f"{result['reward_first5']:.2f} -> {result['reward_last5']:.2f} | "
                f"{result['kl_max']:.2f} | {result['length_first']:.1f} -> "
                f"{result['length_last']:.1f} | {result['wall_s']:.0f} s / "
                f"{result['cpu_s']:.0f} s CPU |"
            )


if __name__ == "__main__":
    main()
