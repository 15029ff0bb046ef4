"""The only module that talks to TRL / PEFT / transformers for training.

It runs inside the training child process (``manage.py training_run_child``) and never
touches the database: it takes a plain ``spec`` dict, reports progress through ``emit``
(one JSON-able dict per event) and writes the adapter (or reward model) to
``spec["output_dir"]``. Keeping TRL behind this one module lets the algorithm set follow
TRL releases: PPO only exists in ``trl.experimental`` up to 1.12 and is gone in 1.13, where
GRPO and RLOO (TRL's stable online trainers) are the online path.

Spec keys: algorithm, base_model_path, reward_source ("reward_model" | "judge", online
runs), reward_model_path (online runs rewarded by a reward model), rows {"train", "test"},
lora {r, alpha, dropout, target_modules}, hyperparameters, seed, device, output_dir,
guards (online runs: ``GuardLimits.as_dict()``), eval_prompts [{prompt, reference}],
max_new_tokens.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from training.services.guards import AnswerLengths, GuardLimits, GuardTripped, guard_callback

Emit = Callable[[dict[str, Any]], None]

ALGORITHMS = ("reward_model", "ppo", "kto", "dpo", "grpo", "rloo", "retriever", "intent_router")
# Online runs sample new answers and are rewarded for them; every one is guarded.
ONLINE_ALGORITHMS = ("ppo", "grpo", "rloo")
REWARD_SOURCES = ("reward_model", "judge")

__all__ = ["GuardTripped", "TrainingConfigError", "ppo_available", "train"]


class TrainingConfigError(ValueError):
    """The run's configuration cannot be trained; the message tells the user why."""


PPO_MISSING = (
    "PPO needs trl.experimental.ppo, which TRL removed in 1.13 (installed: trl {version}). "
    "Use a GRPO or RLOO run (TRL's stable online trainers, same reward model), or pin "
    "trl<1.13 on the training workers."
)


def ppo_available() -> bool:
    """Whether the installed TRL still ships PPO (``trl.experimental.ppo``, up to 1.12)."""
    try:
        return importlib.util.find_spec("trl.experimental.ppo") is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        return False


def trl_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("trl")
    except PackageNotFoundError:
        return "not installed"


def device_resolve(requested: str) -> str:
    """``cuda`` when asked for (or ``auto``) and present, else ``cpu``."""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainingConfigError("device 'cuda' was requested but no CUDA device is present")
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def _bitsandbytes_available() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return False
    return True


def _model_kwargs(*, device: str, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """8-bit base weights on CUDA with bitsandbytes (as the blogs did), fp32 on CPU."""
    if device == "cuda" and hyperparameters.get("load_in_8bit", True) and _bitsandbytes_available():
        from transformers import BitsAndBytesConfig

        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True), "device_map": "auto"}
    return {}


def _precision_args(device: str) -> dict[str, Any]:
    # Every TRL config defaults to bf16=True, which fails without a GPU.
    if device == "cpu":
        return {"use_cpu": True, "bf16": False, "fp16": False}
    import torch

    return {"bf16": torch.cuda.is_bf16_supported(), "fp16": False}


def _common_args(spec: dict[str, Any], device: str) -> dict[str, Any]:
    hp = spec["hyperparameters"]
    args: dict[str, Any] = {
        "output_dir": str(Path(spec["output_dir"]) / "trainer"),
        "learning_rate": float(hp.get("learning_rate", 1e-4)),
        "per_device_train_batch_size": int(hp.get("batch_size", 4)),
        "gradient_accumulation_steps": int(hp.get("gradient_accumulation_steps", 1)),
        "num_train_epochs": float(hp.get("epochs", 1)),
        "max_steps": int(hp.get("max_steps", -1) or -1),
        "seed": int(spec.get("seed", 0)),
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "disable_tqdm": True,
        "gradient_checkpointing": False,
        "dataloader_num_workers": 0,
        **_precision_args(device),
    }
    return args


def _lora_config(spec: dict[str, Any], task_type: str):
    from peft import LoraConfig

    lora = spec["lora"]
    targets = lora.get("target_modules") or "all-linear"
    return LoraConfig(
        r=int(lora.get("r", 8)),
        lora_alpha=int(lora.get("alpha", 16)),
        lora_dropout=float(lora.get("dropout", 0.0)),
        target_modules=targets,
        bias="none",
        task_type=task_type,
        # The reward model's value head is new: train it in full next to the adapter.
        modules_to_save=["score"] if task_type == "SEQ_CLS" else None,
    )


def _tokenizer_load(path: str, *, padding_side: str = "left"):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def prompt_text(tokenizer, question: str) -> str:
    """The prompt as the assistant sees it: the chat template up to "Assistant:"."""
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
        )
    return f"User: {question}\nAssistant:"


def _completion(text: str) -> str:
    return text if text.startswith((" ", "\n")) else f" {text}"


def _check_base(path: str) -> None:
    folder = Path(path)
    if not folder.is_dir() or not (folder / "config.json").exists():
        raise TrainingConfigError(
            f"base model folder {path} does not exist or holds no config.json "
            "(build one with `manage.py build_starter_model` or point to an s3:// URI)"
        )


def _rows(spec: dict[str, Any], split: str, needed: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = spec["rows"].get(split, [])
    for row in rows:
        missing = [key for key in needed if key not in row]
        if missing:
            raise TrainingConfigError(f"snapshot rows lack {missing} for {spec['algorithm']}")
    return rows


def _reporter(emit: Emit) -> Any:
    """A ``TrainerCallback`` that emits every log (the per-step metrics) and progress."""
    from transformers import TrainerCallback

    class Reporter(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            emit({"event": "progress", "step": 0, "total": int(state.max_steps or 0)})

        def on_log(self, args, state, control, logs=None, **kwargs):
            numbers = {
                key: float(value)
                for key, value in (logs or {}).items()
                if isinstance(value, int | float) and math.isfinite(float(value))
            }
            emit(
                {
                    "event": "metrics",
                    "step": int(state.global_step),
                    "total": int(state.max_steps or 0),
                    "metrics": numbers,
                }
            )

    return Reporter()


def train(spec: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """Train ``spec["algorithm"]`` with LoRA and save the result; returns a summary."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    algorithm = spec["algorithm"]
    if algorithm not in ALGORITHMS:
        raise TrainingConfigError(f"unknown algorithm {algorithm!r}; choose one of {ALGORITHMS}")
    if algorithm == "retriever":
        # The MiniLM encoder's query-side adapter (sentence-transformers + PEFT).
        from training.services.retriever_backend import RetrieverConfigError, train_retriever

        try:
            return train_retriever(spec, emit)
        except RetrieverConfigError as exc:
            raise TrainingConfigError(str(exc)) from exc
    if algorithm == "intent_router":
        # A new intent-router version (scikit-learn on MiniLM vectors, chat's recipe).
        from training.services.router_backend import RouterConfigError, train_router

        try:
            return train_router(spec, emit)
        except RouterConfigError as exc:
            raise TrainingConfigError(str(exc)) from exc
    _check_base(spec["base_model_path"])
    import torch
    from transformers import set_seed

    set_seed(int(spec.get("seed", 0)))
    threads = int(spec["hyperparameters"].get("threads", 0) or 0)
    if threads > 0:  # e.g. 1 for tiny models on a busy machine; default: torch decides
        torch.set_num_threads(threads)
    device = device_resolve(spec.get("device", "auto"))
    emit({"event": "log", "line": f"{algorithm} on {device}, base {spec['base_model_path']}"})
    trainer_fn = {
        "reward_model": _train_reward_model,
        "ppo": _train_ppo,
        "kto": _train_kto,
        "dpo": _train_dpo,
        "grpo": _train_grpo,
        "rloo": _train_rloo,
    }[algorithm]
    summary = trainer_fn(spec, emit, device)
    emit({"event": "log", "line": f"{algorithm} finished: {summary.get('artifact')}"})
    return summary


def _train_reward_model(spec: dict[str, Any], emit: Emit, device: str) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    rows = _rows(spec, "train", ("prompt", "chosen", "rejected"))
    if not rows:
        raise TrainingConfigError("reward_model needs preference pairs; the snapshot has none")
    base = spec["base_model_path"]
    tokenizer = _tokenizer_load(base, padding_side="right")
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=1, **_model_kwargs(device=device, hyperparameters=spec["hyperparameters"])
    )
    model.config.pad_token_id = tokenizer.pad_token_id

    def pair(row: dict[str, Any]) -> dict[str, str]:
        prompt = prompt_text(tokenizer, row["prompt"])
        # The trainer appends the EOS: the score is read at that last token.
        return {
            "chosen": prompt + _completion(row["chosen"]),
            "rejected": prompt + _completion(row["rejected"]),
        }

    dataset = Dataset.from_list([pair(r) for r in rows])
    args = RewardConfig(**_common_args(spec, device), max_length=256)
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=_lora_config(spec, "SEQ_CLS"),
        callbacks=[_reporter(emit)],
    )
    trainer.train()
    merged = cast(Any, trainer.model).merge_and_unload()
    out = Path(spec["output_dir"]) / "reward_model"
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    accuracy = reward_pair_accuracy(
        model_dir=out, rows=_rows(spec, "test", ("prompt", "chosen", "rejected"))
    )
    return {"artifact": "reward_model", "pair_accuracy": accuracy}


def reward_scores(*, model, tokenizer, texts: list[str]) -> list[float]:
    """Reward-model scores of full texts, with the EOS appended (read at the last token)."""
    import torch

    eos = tokenizer.eos_token or ""
    with_eos = [text if text.endswith(eos) else text + eos for text in texts]
    tokenizer.padding_side = "right"
    batch = tokenizer(with_eos, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        logits = model(**batch).logits[:, 0]
    return [float(v) for v in logits]


def reward_pair_accuracy(*, model_dir: Path, rows: list[dict[str, Any]]) -> float | None:
    """Share of held-out pairs where the reward model scores the chosen answer higher."""
    if not rows:
        return None
    from transformers import AutoModelForSequenceClassification

    tokenizer = _tokenizer_load(str(model_dir), padding_side="right")
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    prompts = [prompt_text(tokenizer, r["prompt"]) for r in rows]
    chosen = reward_scores(
        model=model,
        tokenizer=tokenizer,
        texts=[p + _completion(r["chosen"]) for p, r in zip(prompts, rows, strict=True)],
    )
    rejected = reward_scores(
        model=model,
        tokenizer=tokenizer,
        texts=[p + _completion(r["rejected"]) for p, r in zip(prompts, rows, strict=True)],
    )
    wins = sum(c > r for c, r in zip(chosen, rejected, strict=True))
    return wins / len(rows)


def _guard(spec: dict[str, Any], emit: Emit, lengths: AnswerLengths | None = None) -> Any:
    limits = GuardLimits.from_dict(spec.get("guards") or {})
    return guard_callback(limits=limits, emit=emit, lengths=lengths)


def _train_guarded(trainer: Any, guard: Any) -> None:
    """``trainer.train()``; raises ``GuardTripped`` when the guard stopped it."""
    trainer.train()
    guard.raise_if_tripped()


def _train_ppo(spec: dict[str, Any], emit: Emit, device: str) -> dict[str, Any]:
    if not ppo_available():
        raise TrainingConfigError(PPO_MISSING.format(version=trl_version()))
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    reward_path = spec.get("reward_model_path")
    if not reward_path or not (Path(reward_path) / "config.json").exists():
        raise TrainingConfigError(
            "ppo needs a reward model: pick a succeeded reward_model run as the reward run"
        )
    rows = spec["rows"].get("train", [])
    prompts = [row["prompt"] for row in rows if row.get("prompt")]
    if not prompts:
        raise TrainingConfigError("ppo needs prompts; the snapshot's train split has none")
    base = spec["base_model_path"]
    hp = spec["hyperparameters"]
    # Left padding: PPO generates after the prompt; right padding silently learns nothing.
    tokenizer = _tokenizer_load(base, padding_side="left")
    policy = AutoModelForCausalLM.from_pretrained(
        base, **_model_kwargs(device=device, hyperparameters=hp)
    )
    reward_model = AutoModelForSequenceClassification.from_pretrained(reward_path, num_labels=1)
    value_model = AutoModelForSequenceClassification.from_pretrained(reward_path, num_labels=1)
    for model in (reward_model, value_model):
        model.config.pad_token_id = tokenizer.pad_token_id

    def encode(question: str) -> dict[str, Any]:
        text = prompt_text(tokenizer, question)
        return {"input_ids": tokenizer(text, add_special_tokens=False)["input_ids"]}

    dataset = Dataset.from_list([encode(p) for p in prompts])
    common = _common_args(spec, device)
    batch_size = int(hp.get("batch_size", 4))
    episodes = int(hp.get("total_episodes") or 0) or math.ceil(
        float(hp.get("epochs", 1)) * len(prompts)
    )
    args = PPOConfig(
        **{k: v for k, v in common.items() if k not in ("max_steps", "num_train_epochs")},
        total_episodes=max(episodes, batch_size),
        num_ppo_epochs=int(hp.get("ppo_epochs", 4)),
        num_mini_batches=int(hp.get("num_mini_batches", 1)),
        response_length=int(hp.get("response_length", 24)),
        stop_token="eos",  # noqa: S106 - the EOS token ends answers, not a secret
        kl_coef=float(hp.get("kl_coef", 0.05)),
        temperature=float(hp.get("temperature", 0.7)),
        missing_eos_penalty=hp.get("missing_eos_penalty", 1.0),
        num_sample_generations=0,
        local_rollout_forward_batch_size=batch_size,
    )
    # PPO logs no answer length: record it from the policy's generations for the guard.
    lengths = AnswerLengths(eos_token_id=tokenizer.eos_token_id)
    lengths.wrap(policy)
    guard = _guard(spec, emit, lengths)
    trainer = PPOTrainer(
        args=args,
        processing_class=tokenizer,
        model=policy,
        ref_model=None,
        reward_model=reward_model,
        value_model=value_model,
        train_dataset=dataset,
        peft_config=_lora_config(spec, "CAUSAL_LM"),
        callbacks=[guard, _reporter(emit)],
    )
    _train_guarded(trainer, guard)
    out = Path(spec["output_dir"]) / "adapter"
    cast(Any, trainer.model).policy.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"artifact": "adapter"}


def _prompts_with_references(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One entry per distinct question of the split, with a known-good answer when the
    snapshot has one (a chosen answer, a desirable completion, a response scored 4+)."""
    references: dict[str, str] = {}
    for row in rows:
        prompt = row.get("prompt")
        if not prompt:
            continue
        if not references.get(prompt):
            references[prompt] = _good_answer(row)
    return [{"question": q, "reference": r} for q, r in references.items()]


def _good_answer(row: dict[str, Any]) -> str:
    if row.get("chosen"):
        return str(row["chosen"])
    if row.get("label") and row.get("completion"):
        return str(row["completion"])
    if row.get("response") and float(row.get("score") or 0) >= 4:
        return str(row["response"])
    return ""


def _reward_function(spec: dict[str, Any], emit: Emit, policy_tokenizer: Any) -> Callable:
    """The online run's reward: the platform's reward model (scored on ``text + EOS``,
    as it was trained) or, once calibrated, the AI judge (1-5)."""
    source = spec.get("reward_source") or "reward_model"
    hp = spec["hyperparameters"]
    if source == "judge":
        return _judge_reward(emit)
    if source != "reward_model":
        raise TrainingConfigError(f"unknown reward source {source!r}; choose {REWARD_SOURCES}")
    from transformers import AutoModelForSequenceClassification

    path = spec.get("reward_model_path")
    if not path or not (Path(path) / "config.json").exists():
        raise TrainingConfigError(
            f"{spec['algorithm']} rewarded by a reward model needs one: pick a succeeded "
            "reward_model run as the reward run"
        )
    tokenizer = _tokenizer_load(path, padding_side="right")
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1).eval()
    model.config.pad_token_id = tokenizer.pad_token_id
    penalty = float(hp.get("missing_eos_penalty") or 0.0)
    eos = policy_tokenizer.eos_token_id

    def reward_model(prompts, completions, completion_ids=None, **kwargs) -> list[float]:
        # The trainer decodes completions without special tokens; reward_scores puts the
        # EOS back, where the reward model reads its score.
        texts = [
            p + (_completion(c) if c else "") for p, c in zip(prompts, completions, strict=True)
        ]
        scores = reward_scores(model=model, tokenizer=tokenizer, texts=texts)
        if penalty and completion_ids is not None:
            # Like PPO's missing_eos_penalty: an answer cut off at the length limit loses.
            scores = [
                score - penalty if eos not in ids else score
                for score, ids in zip(scores, completion_ids, strict=True)
            ]
        return scores

    return reward_model


def _judge_reward(emit: Emit) -> Callable:
    """The AI judge as a reward (``labeling.judge.judge_scores``, 1-5 per answer).

    The judge is the labeling app's: the child loads Django's settings for it (never the
    database). The worker checked the judge's calibration gate before starting the run.
    """
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise TrainingConfigError("the judge reward needs DJANGO_SETTINGS_MODULE in the worker")
    import django

    django.setup()
    from labeling.judge import judge_scores

    emit({"event": "log", "line": "reward: the AI judge (calibrated against reviewers)"})

    def judge(prompts, completions, question, reference, **kwargs) -> list[float]:
        cases = [
            (q, c.strip(), r or None)
            for q, c, r in zip(question, completions, reference, strict=True)
        ]
        return [float(result.score) for result in judge_scores(cases)]

    return judge


def _train_grpo(spec: dict[str, Any], emit: Emit, device: str) -> dict[str, Any]:
    return _online_trainer(spec, emit, device, kind="grpo")


def _train_rloo(spec: dict[str, Any], emit: Emit, device: str) -> dict[str, Any]:
    return _online_trainer(spec, emit, device, kind="rloo")


def _online_trainer(spec: dict[str, Any], emit: Emit, device: str, *, kind: str):
    """GRPO or RLOO (TRL's stable online trainers) with a LoRA policy.

    Each step samples ``num_generations`` answers per question and moves the policy
    towards the better-rewarded ones; the reference for the KL is the base model (the
    adapter disabled). ``batch_size`` counts answers, so it must be a multiple of
    ``num_generations``.
    """
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    hp = spec["hyperparameters"]
    entries = _prompts_with_references(spec["rows"].get("train", []))
    if not entries:
        raise TrainingConfigError(f"{kind} needs prompts; the snapshot's train split has none")
    batch_size = int(hp.get("batch_size", 8))
    generations = int(hp.get("num_generations", 4))
    if generations < 2 or batch_size % generations:
        raise TrainingConfigError(
            f"{kind}: batch_size ({batch_size}) must be a multiple of num_generations "
            f"({generations}, at least 2): each question gets num_generations answers"
        )
    base = spec["base_model_path"]
    tokenizer = _tokenizer_load(base, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(
        base, **_model_kwargs(device=device, hyperparameters=hp)
    )
    reward = _reward_function(spec, emit, tokenizer)
    dataset = Dataset.from_list(
        [{"prompt": prompt_text(tokenizer, e["question"]), **e} for e in entries]
    )
    online: dict[str, Any] = {
        **_common_args(spec, device),
        "num_generations": generations,
        "max_completion_length": int(hp.get("max_completion_length", 24)),
        "temperature": float(hp.get("temperature", 1.0)),
        "beta": float(hp.get("beta", 0.04)),
        "num_iterations": int(hp.get("num_iterations", 1)),
        "log_completions": False,
    }
    if kind == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        args: Any = GRPOConfig(**online)
        trainer_cls: Any = GRPOTrainer
    else:
        from trl import RLOOConfig, RLOOTrainer

        args = RLOOConfig(**online)
        trainer_cls = RLOOTrainer
    guard = _guard(spec, emit)
    trainer = trainer_cls(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=_lora_config(spec, "CAUSAL_LM"),
        callbacks=[guard, _reporter(emit)],
    )
    _train_guarded(trainer, guard)
    out = Path(spec["output_dir"]) / "adapter"
    trainer.model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"artifact": "adapter"}


def _preference_trainer(spec: dict[str, Any], emit: Emit, device: str, *, kind: str):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    base = spec["base_model_path"]
    tokenizer = _tokenizer_load(base, padding_side="right")
    model = AutoModelForCausalLM.from_pretrained(
        base, **_model_kwargs(device=device, hyperparameters=spec["hyperparameters"])
    )
    hp = spec["hyperparameters"]
    common = _common_args(spec, device)
    if kind == "dpo":
        from trl import DPOConfig, DPOTrainer

        rows = _rows(spec, "train", ("prompt", "chosen", "rejected"))
        if not rows:
            raise TrainingConfigError("dpo needs preference pairs; the snapshot has none")
        data: list[dict[str, Any]] = [
            {
                "prompt": prompt_text(tokenizer, r["prompt"]),
                "chosen": _completion(r["chosen"]),
                "rejected": _completion(r["rejected"]),
            }
            for r in rows
        ]
        args: Any = DPOConfig(**common, beta=float(hp.get("beta", 0.1)), max_length=256)
        trainer_cls: Any = DPOTrainer
    else:
        from trl import KTOConfig, KTOTrainer

        rows = _rows(spec, "train", ("prompt", "completion", "label"))
        labels = {bool(r["label"]) for r in rows}
        if labels != {True, False}:
            raise TrainingConfigError(
                "kto needs both desirable and undesirable ratings; the snapshot has "
                f"{'only ' + str(labels.pop()) if labels else 'none'}"
            )
        data = [
            {
                "prompt": prompt_text(tokenizer, r["prompt"]),
                "completion": _completion(r["completion"]),
                "label": bool(r["label"]),
            }
            for r in rows
        ]
        args = KTOConfig(**common, beta=float(hp.get("beta", 0.1)), max_length=256)
        trainer_cls = KTOTrainer
    trainer = trainer_cls(
        model=model,
        ref_model=None,
        args=args,
        train_dataset=Dataset.from_list(data),
        processing_class=tokenizer,
        peft_config=_lora_config(spec, "CAUSAL_LM"),
        callbacks=[_reporter(emit)],
    )
    trainer.train()
    out = Path(spec["output_dir"]) / "adapter"
    trainer.model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"artifact": "adapter"}


def _train_dpo(spec: dict[str, Any], emit: Emit, device: str) -> dict[str, Any]:
    return _preference_trainer(spec, emit, device, kind="dpo")


def _train_kto(spec: dict[str, Any], emit: Emit, device: str) -> dict[str, Any]:
    return _preference_trainer(spec, emit, device, kind="kto")


def answers_generate(
    *,
    base_model_path: str,
    questions: list[str],
    adapter_path: str | None = None,
    max_new_tokens: int = 48,
) -> list[str]:
    """Greedy answers of base (+ adapter) to each question, as the ``hf`` provider would."""
    if not questions:
        return []
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = _tokenizer_load(base_model_path, padding_side="left")
    model: Any = AutoModelForCausalLM.from_pretrained(base_model_path)
    if adapter_path:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_path)
    model.eval()
    answers = []
    for question in questions:
        inputs = tokenizer(
            prompt_text(tokenizer, question), return_tensors="pt", add_special_tokens=False
        )
        with torch.no_grad():
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        new = output[0][inputs["input_ids"].shape[1] :]
        answers.append(tokenizer.decode(new, skip_special_tokens=True).strip())
    return answers
