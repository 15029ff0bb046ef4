# ruff: noqa: E501 - log lines quoted verbatim
from __future__ import annotations

from training.services.logs import log_lines_clean

# What a GRPO child printed, verbatim apart from the paths.
CHILD_OUTPUT = """grpo on cpu, base /srv/models/starter
Loading weights:   0%|          | 0/20 [00:00<?, ?it/s]
Loading weights: 100%|██████████| 20/20 [00:00<00:00, 22069.48it/s]
/srv/.venv/lib/python3.11/site-packages/transformers/training_args.py:1541: FutureWarning: `gradient_checkpointing` is deprecated and will be removed in v6. Use `activation_checkpointing` instead.
  warnings.warn(f"`{old}` is deprecated and will be removed in v6. Use `{new}` instead.", FutureWarning)
/srv/.venv/lib/python3.11/site-packages/transformers/modeling_utils.py:3312: FutureWarning: `is_gradient_checkpointing` is deprecated and will be removed in v6. Use `is_activation_checkpointing` instead.
  return self._is_gradient_checkpointing()
guards: KL per answer at most 4.0; mean answer length within 50% of its first 3 steps
{'loss': '0', 'grad_norm': '0.3559', 'learning_rate': '0.3', 'reward': '-0.9577'}
/srv/.venv/lib/python3.11/site-packages/torch/utils/data.py:90: UserWarning: the dataset has 3 rows only
  warnings.warn(
Traceback (most recent call last):
  File "/srv/training/child.py", line 51, in run
    summary = trl_backend.train(spec, emit)
RuntimeError: CUDA out of memory"""


def test_the_log_tail_drops_bars_deprecations_and_metric_dicts_but_keeps_errors():
    kept = log_lines_clean(CHILD_OUTPUT.splitlines())

    assert kept == [
        "grpo on cpu, base /srv/models/starter",
        "guards: KL per answer at most 4.0; mean answer length within 50% of its first 3 steps",
        "/srv/.venv/lib/python3.11/site-packages/torch/utils/data.py:90: UserWarning: "
        "the dataset has 3 rows only",
        "Traceback (most recent call last):",
        '  File "/srv/training/child.py", line 51, in run',
        "    summary = trl_backend.train(spec, emit)",
        "RuntimeError: CUDA out of memory",
    ]
