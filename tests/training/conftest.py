"""The tiny starter model every training test reuses, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.services.starter import qa_text, starter_model_build

SUPPORT_QA = [
    ("How do I reset my password?", "Open Settings > Security and tap Reset password."),
    ("When is my bill due?", "Your bill is due on the date shown under Billing > Overview."),
    ("How do I install the Hub?", "Follow Settings > Devices > Add device in the app."),
    ("Can I cancel my plan?", "Yes, within 14 days at no cost under Plans > My plan."),
    ("How do I pay by direct debit?", "Add SEPA direct debit under Billing > Payment methods."),
    ("Why is my bill high?", "Check your usage under Billing > Usage and compare months."),
    ("How do I turn on two-factor?", "Turn it on under Settings > Security > Two-factor."),
    ("When does my supply start?", "Your supply normally starts 21 days after you sign up."),
]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tokenizer + 2-layer Llama trained for a few steps on support Q&A (offline)."""
    texts = [qa_text(question=q, answer=a) for q, a in SUPPORT_QA] * 4
    return starter_model_build(
        output_dir=tmp_path_factory.mktemp("starter"), texts=texts, steps=8, seed=0
    )
