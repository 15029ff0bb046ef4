"""A small causal LM and tokenizer built locally, so the whole loop runs offline.

Nothing is downloaded: a byte-level BPE tokenizer is trained on the given texts, a
two-layer Llama is initialised from scratch and warmed up for a few seconds on the same
texts (support Q&A), then both are saved so that ``AutoTokenizer.from_pretrained`` and
``AutoModelForCausalLM.from_pretrained`` reload them from the folder.

The result is a mechanics-only toy: it shows the training loop end to end, but a model
this small trained from scratch does not write useful answers. Its folder carries
``TOY_MODEL.txt`` so that the admin labels it and the ``hf`` provider refuses to serve it
to customers unless an operator opts in (``HF_ALLOW_TOY_MODEL``).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

# The marker's name, as the hf provider reads it (chat.assistant.contract.TOY_MODEL_MARKER;
# not imported: that package loads the whole assistant, and this module stays light).
TOY_MODEL_MARKER = "TOY_MODEL.txt"

# The chat template the tokenizer carries: one turn per line, the answer after
# "Assistant:" and closed by the EOS token (which the PPO/DPO trainers stop on).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n"
    "{% elif message['role'] == 'user' %}User: {{ message['content'] }}\n"
    "{% else %}Assistant: {{ message['content'] }}{{ eos_token }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"


def qa_text(*, question: str, answer: str) -> str:
    """One warm-up example in the template's shape: the question, then the answer."""
    return f"User: {question}\nAssistant: {answer}"


def tokenizer_build(*, texts: list[str], vocab_size: int = 700):
    """A byte-level BPE tokenizer trained on ``texts``, as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token=None))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=512,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


TOY_MODEL_TEXT = """This folder holds Loopdesk's offline starter model: a {parameters}-parameter
two-layer Llama trained from scratch for {steps} steps on the demo knowledge base.

It is a MECHANICS-ONLY TOY. It exists so that the training loop (snapshot, run,
evaluation, approval, deployment, rollback) can be shown offline end to end; its answers
are not fit for customers, however it is fine-tuned.

The hf provider refuses to answer customers with it unless HF_ALLOW_TOY_MODEL=true.
For real answers point HF_BASE_MODEL_PATH at a pretrained causal LM (a local folder or an
s3:// prefix) on a GPU worker; see docs/training.md.
"""


def is_toy_model(path: Path) -> bool:
    """True when ``path`` is a base-model folder marked as the mechanics-only toy."""
    return (Path(path) / TOY_MODEL_MARKER).exists()


def starter_model_build(
    *,
    output_dir: Path,
    texts: list[str],
    steps: int = 300,
    seed: int = 0,
    hidden_size: int = 64,
    vocab_size: int = 700,
    batch_size: int = 16,
    max_length: int = 96,
    threads: int = 1,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Train a tokenizer and a 2-layer Llama on ``texts`` and save both to ``output_dir``.

    ``steps`` of supervised warm-up (AdamW, lr 3e-3) make the model write on-topic, if
    crude, answers; tests pass a handful of steps. ``progress`` receives a line per phase
    and every tenth of the steps. Torch runs on ``threads`` threads for the build (one by
    default: on a busy two-core machine more threads spin against each other and the
    build took minutes). The folder is marked as a toy (``TOY_MODEL.txt``). Returns
    ``output_dir``.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if not texts:
        raise ValueError("starter_model_build needs at least one text")
    report = progress or (lambda line: None)
    started = time.monotonic()
    random.seed(seed)
    torch.manual_seed(seed)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    previous_threads = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        losses, parameters = _build(
            output_dir=output_dir,
            texts=texts,
            steps=steps,
            hidden_size=hidden_size,
            vocab_size=vocab_size,
            batch_size=batch_size,
            max_length=max_length,
            report=report,
            started=started,
        )
    finally:
        torch.set_num_threads(previous_threads)
    (output_dir / "starter.json").write_text(
        json.dumps(
            {
                "texts": len(texts),
                "steps": steps,
                "seed": seed,
                "parameters": parameters,
                "first_loss": losses[0] if losses else None,
                "last_loss": losses[-1] if losses else None,
                "seconds": round(time.monotonic() - started, 1),
            },
            indent=2,
        )
    )
    (output_dir / TOY_MODEL_MARKER).write_text(
        TOY_MODEL_TEXT.format(parameters=parameters, steps=steps)
    )
    report(f"saved to {output_dir} in {time.monotonic() - started:.1f}s (marked as a toy)")
    return output_dir


def _build(
    *,
    output_dir: Path,
    texts: list[str],
    steps: int,
    hidden_size: int,
    vocab_size: int,
    batch_size: int,
    max_length: int,
    report: Callable[[str], None],
    started: float,
) -> tuple[list[float], int]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer_build(texts=texts, vocab_size=vocab_size)
    report(f"tokenizer: {len(tokenizer)} tokens from {len(texts)} texts")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)

    # No BOS: the tokenizer does not add one, so prompts at inference look like these.
    encoded = [
        [
            *tokenizer(text, add_special_tokens=False)["input_ids"][: max_length - 1],
            tokenizer.eos_token_id,
        ]
        for text in texts
    ]
    parameters = sum(p.numel() for p in model.parameters())
    report(f"model: {parameters} parameters; warming up for {steps} steps")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    losses: list[float] = []
    every = max(1, steps // 10)
    for step in range(1, steps + 1):
        batch = random.sample(encoded, k=min(batch_size, len(encoded)))
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
        labels = input_ids.masked_fill(attention == 0, -100)
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
        if step % every == 0 or step == steps:
            report(f"step {step}/{steps}  loss {losses[-1]:.3f}  {time.monotonic() - started:.1f}s")
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return losses, parameters


def knowledge_base_texts(*, base_dir: Path) -> list[str]:
    """Warm-up texts from the demo knowledge base: article bodies and the Q&A pairs.

    Questions that the demo snapshot holds out for evaluation are left out, so a run's
    before/after scores are measured on questions the starter model never saw.
    """
    # Imported here: this module is also loaded by the training child, which has no Django.
    from labeling.demo import DEMO_TEST_SHARE
    from labeling.services.snapshots import split_of

    demo = base_dir / "chat" / "demo"
    articles = json.loads((demo / "articles.json").read_text())
    questions = [
        q
        for q in json.loads((demo / "questions.json").read_text())
        if split_of(q["question"], test_share=DEMO_TEST_SHARE) == "train"
    ]
    texts = [f"{a['title']}. {a['body']}" for a in articles]
    # The Q&A pairs carry the chat shape; repeat them so the answers dominate warm-up.
    qa = [qa_text(question=q["question"], answer=q["reference_answer"]) for q in questions]
    return texts + qa * 3
