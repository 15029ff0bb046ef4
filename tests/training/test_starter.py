from __future__ import annotations

from transformers import AutoModelForCausalLM, AutoTokenizer


def test_starter_model_reloads_offline_and_generates(tiny_model_dir):
    # Given the locally built starter model, when it is reloaded with the Auto classes
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)

    # then the tokenizer carries the special tokens and the chat template
    specials = (tokenizer.pad_token, tokenizer.eos_token, tokenizer.bos_token)
    assert specials == ("<pad>", "</s>", "<s>")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "How do I reset my password?"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert prompt.endswith("Assistant:")
    # and the model continues a prompt with new tokens
    inputs = tokenizer(prompt, return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]
    assert model.config.num_hidden_layers == 2


def test_warm_up_texts_leave_out_the_questions_the_demo_snapshot_holds_out(settings):
    import json
    from pathlib import Path

    from labeling.demo import DEMO_TEST_SHARE
    from labeling.services.snapshots import split_of
    from training.services.starter import knowledge_base_texts

    base = Path(settings.BASE_DIR)
    questions = json.loads((base / "chat" / "demo" / "questions.json").read_text())
    held_out = [
        q for q in questions if split_of(q["question"], test_share=DEMO_TEST_SHARE) == "test"
    ]
    kept = [q for q in questions if q not in held_out]
    assert held_out and kept

    corpus = "\n".join(knowledge_base_texts(base_dir=base))

    assert not [q["question"] for q in held_out if q["question"] in corpus]
    assert all(q["question"] in corpus for q in kept)
