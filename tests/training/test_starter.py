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
