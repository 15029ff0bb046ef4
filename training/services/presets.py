"""Named starting points for a run: the two AWS blogs' settings and a tiny CPU demo.

The blogs' learning rates (1e-5, 1.41e-5) are for multi-billion-parameter models; LoRA on
the tiny starter model needs ~1e-4..1e-3, hence the separate "tiny CPU demo" presets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    algorithm: str
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    lora_target_modules: tuple[str, ...] = ()

    def fields(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "lora_r": self.lora_r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "lora_target_modules": list(self.lora_target_modules),
            "hyperparameters": dict(self.hyperparameters),
        }


# GRPO / RLOO on the starter model: 8 answers per step (2 questions x 4), 24 new tokens.
TINY_ONLINE: dict[str, Any] = {
    "learning_rate": 1e-3,
    "batch_size": 8,
    "num_generations": 4,
    "max_completion_length": 24,
    "temperature": 1.0,
    "beta": 0.04,
    "missing_eos_penalty": 1.0,
    "max_steps": 80,
}

# The retriever adapter's settings (chosen on the dev questions, never on eval).
RETRIEVER_DEFAULTS: dict[str, Any] = {
    "learning_rate": 2e-3,
    "epochs": 6,
    "batch_size": 32,
    "temperature": 0.05,
    "margin": 0.1,
    "pull": 1.0,
    "pull_to": 0.7,
    "keep_weight": 4.0,
    "keep_batch": 16,
    # The ranking's own loss (``retriever_backend.FusedRanker``): the right article first
    # by the fused score the assistant cites from (BM25 fixed, the encoder's signals
    # learnt), on top of the cosine losses above.
    "fused_weight": 1.0,
    "fused_temperature": 1.0,
    # LoRA on the top 2 of MiniLM's 6 layers only: the assistant encodes the lower 4
    # once for the router's base vector and the adapted retrieval vector.
    "lora_top_layers": 2,
}

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        # "Incorporate offline and online human-machine workflows": PPO, LoRA r=32
        # alpha=32 dropout 0.05, lr 1e-5, 10 PPO epochs, batch size 1.
        Preset(
            name="online_offline_blog_ppo",
            label="Online/offline HITL blog: PPO, LoRA r32/a32, lr 1e-5, 10 PPO epochs, batch 1",
            algorithm="ppo",
            lora_r=32,
            lora_alpha=32,
            lora_dropout=0.05,
            hyperparameters={
                "learning_rate": 1e-5,
                "ppo_epochs": 10,
                "batch_size": 1,
                "epochs": 1,
            },
        ),
        # "Improve LLM performance with human and AI feedback" (RLAIF): a reward model
        # (lr 1e-5, converged after 10 epochs), then PPO with LoRA r=32 alpha=64,
        # lr 1.41e-5, 3 epochs.
        Preset(
            name="rlaif_blog_reward_model",
            label="RLAIF blog step 1: reward model, lr 1e-5, 10 epochs",
            algorithm="reward_model",
            lora_r=32,
            lora_alpha=64,
            lora_dropout=0.05,
            hyperparameters={"learning_rate": 1e-5, "epochs": 10, "batch_size": 8},
        ),
        Preset(
            name="rlaif_blog_ppo",
            label="RLAIF blog step 2: PPO, LoRA r32/a64, lr 1.41e-5, 3 epochs",
            algorithm="ppo",
            lora_r=32,
            lora_alpha=64,
            lora_dropout=0.05,
            hyperparameters={"learning_rate": 1.41e-5, "epochs": 3, "batch_size": 8},
        ),
        # Tiny CPU demo: settings that visibly learn on the starter model in seconds.
        Preset(
            name="tiny_cpu_reward_model",
            label="Tiny CPU demo: reward model (seconds)",
            algorithm="reward_model",
            lora_r=8,
            lora_alpha=16,
            lora_dropout=0.0,
            hyperparameters={"learning_rate": 1e-3, "epochs": 3, "batch_size": 8},
        ),
        Preset(
            name="tiny_cpu_ppo",
            label="Tiny CPU demo: PPO (about a minute)",
            algorithm="ppo",
            lora_r=8,
            lora_alpha=16,
            lora_dropout=0.0,
            # Measured on the starter model: with a reward model that prefers complete
            # answers, objective/scores rises from about -2 to 0 over 50 PPO steps.
            hyperparameters={
                "learning_rate": 3e-3,
                "total_episodes": 400,
                "batch_size": 8,
                "ppo_epochs": 4,
                "response_length": 16,
                "temperature": 1.0,
                "kl_coef": 0.01,
                "missing_eos_penalty": 2.0,
            },
        ),
        # Online RL after PPO: TRL's stable GRPO and RLOO trainers, LoRA policy, rewarded
        # by a reward_model run (or the calibrated judge). Settings for a 7B-class base on
        # a GPU worker: TRL's documented betas (GRPO 0.04 as in the DeepSeekMath paper,
        # RLOO 0.05), a LoRA learning rate of 1e-5 (TRL's 1e-6 default is for full
        # fine-tuning), 8 / 4 sampled answers per question.
        Preset(
            name="grpo_lora",
            label="GRPO, LoRA r16/a32, lr 1e-5, 8 answers per question, beta 0.04 (GPU)",
            algorithm="grpo",
            lora_r=16,
            lora_alpha=32,
            lora_dropout=0.05,
            hyperparameters={
                "learning_rate": 1e-5,
                "batch_size": 8,
                "num_generations": 8,
                "gradient_accumulation_steps": 4,
                "max_completion_length": 256,
                "temperature": 0.9,
                "beta": 0.04,
                "epochs": 1,
            },
        ),
        Preset(
            name="rloo_lora",
            label="RLOO, LoRA r16/a32, lr 1e-5, 4 answers per question, beta 0.05 (GPU)",
            algorithm="rloo",
            lora_r=16,
            lora_alpha=32,
            lora_dropout=0.05,
            hyperparameters={
                "learning_rate": 1e-5,
                "batch_size": 8,
                "num_generations": 4,
                "gradient_accumulation_steps": 4,
                "max_completion_length": 256,
                "temperature": 0.9,
                "beta": 0.05,
                "epochs": 1,
            },
        ),
        Preset(
            name="tiny_cpu_grpo",
            label="Tiny CPU demo: GRPO (seconds)",
            algorithm="grpo",
            lora_r=8,
            lora_alpha=16,
            lora_dropout=0.0,
            hyperparameters=TINY_ONLINE,
        ),
        Preset(
            name="tiny_cpu_rloo",
            label="Tiny CPU demo: RLOO (seconds)",
            algorithm="rloo",
            lora_r=8,
            lora_alpha=16,
            lora_dropout=0.0,
            hyperparameters={**TINY_ONLINE, "beta": 0.05},
        ),
        Preset(
            name="tiny_cpu_dpo",
            label="Tiny CPU demo: DPO (seconds)",
            algorithm="dpo",
            lora_r=8,
            lora_alpha=16,
            lora_dropout=0.0,
            hyperparameters={"learning_rate": 1e-3, "epochs": 2, "batch_size": 8, "beta": 0.1},
        ),
        Preset(
            name="tiny_cpu_kto",
            label="Tiny CPU demo: KTO (seconds)",
            algorithm="kto",
            lora_r=8,
            lora_alpha=16,
            lora_dropout=0.0,
            hyperparameters={"learning_rate": 1e-3, "epochs": 2, "batch_size": 8, "beta": 0.1},
        ),
        # The retriever adapter: LoRA on the shipped MiniLM's question side (CPU, a few
        # minutes for a few hundred questions).
        Preset(
            name="retriever_minilm",
            label="Retriever adapter: MiniLM question side, top 2 layers, LoRA r32/a64, lr 2e-3",
            algorithm="retriever",
            lora_r=32,
            lora_alpha=64,
            lora_dropout=0.0,
            hyperparameters=RETRIEVER_DEFAULTS,
        ),
        # The intent router: a new version from the shipped training data plus the rows
        # agents labelled (``chat.services.intents``; no LoRA: the LoRA fields are
        # unused). ``shipped_rows_per_class`` > 0 trains on that many shipped rows per
        # class only (a quick check; the full recipe takes a few minutes of CPU).
        Preset(
            name="intent_router",
            label="Intent router: retrain from the shipped data and agents' outcomes (CPU)",
            algorithm="intent_router",
            lora_r=8,
            lora_alpha=16,
            lora_dropout=0.0,
            hyperparameters={"shipped_rows_per_class": 0},
        ),
    )
}


def preset_choices() -> list[tuple[str, str]]:
    return [("", "(none)")] + [(p.name, p.label) for p in PRESETS.values()]
