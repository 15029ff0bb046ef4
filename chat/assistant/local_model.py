"""The ``local`` provider's answer model: extractive answers from the retrieved passages.

A LangChain chat model like any other, so the chain is the same for every provider: it
reads the prompt the chain built (the numbered passages in the system message, the
customer's question last), picks the passage sentences closest to the question with
MiniLM and returns them, cited, in one piece (it has the whole answer at once).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from chat.assistant.embeddings import MODEL_NAME, embed_query, embed_texts, inference_run

PASSAGE_HEADER = re.compile(r"^\[(\d+)\] (.+) \(([\w-]+)\)$", re.MULTILINE)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(])")


@dataclass(frozen=True)
class PromptPassage:
    number: int
    title: str
    slug: str
    text: str


def prompt_passages(system_text: str) -> list[PromptPassage]:
    """Parse the numbered passages out of the answer prompt's system message."""
    headers = list(PASSAGE_HEADER.finditer(system_text))
    passages = []
    for i, header in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(system_text)
        text = system_text[header.end() : end].strip()
        passages.append(PromptPassage(int(header.group(1)), header.group(2), header.group(3), text))
    return passages


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_SPLIT.split(text) if len(s.strip()) > 2]


_SENTENCES: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
_SENTENCES_MAX = 4096


def _sentence_vectors(text: str) -> tuple[tuple[str, ...], np.ndarray]:
    """A passage's sentences and their vectors (computed once per passage text)."""
    found = _SENTENCES.get(text)
    if found is None:
        parts = tuple(sentences(text))
        found = (parts, embed_texts(list(parts)))
        if len(_SENTENCES) >= _SENTENCES_MAX:
            _SENTENCES.pop(next(iter(_SENTENCES)))
        _SENTENCES[text] = found
    return found


def sentence_vectors_prime(texts: list[str]) -> int:
    """Compute the sentence vectors of passages not cached yet, in one encoder call;
    returns how many passages. A server runs this at start (``assistant_warm_up``) so
    that customers' answers do not pay for it. Runs the model: call it on the
    inference thread."""
    missing = [t for t in dict.fromkeys(texts) if t not in _SENTENCES][:_SENTENCES_MAX]
    parts = [tuple(sentences(t)) for t in missing]
    vectors = embed_texts([sentence for part in parts for sentence in part])
    start = 0
    for text, part in zip(missing, parts, strict=True):
        if len(_SENTENCES) >= _SENTENCES_MAX:
            _SENTENCES.pop(next(iter(_SENTENCES)))
        _SENTENCES[text] = (part, vectors[start : start + len(part)])
        start += len(part)
    return len(missing)


def sentence_vectors_compute(texts: list[str]) -> list[np.ndarray]:
    """The sentence vectors of each passage text, in one encoder call (stored with the
    passage by the background embedding)."""
    parts = [sentences(t) for t in texts]
    vectors = embed_texts([sentence for part in parts for sentence in part])
    found, start = [], 0
    for part in parts:
        found.append(vectors[start : start + len(part)])
        start += len(part)
    return found


def sentence_vectors_seed(stored: list[tuple[str, bytes]]) -> int:
    """Fill the cache from vectors stored with the passages (float16 bytes); returns how
    many passages were added. Rows that do not match the text's sentences are skipped
    (computed on first use instead)."""
    added = 0
    for text, blob in stored:
        if not blob or text in _SENTENCES:
            continue
        parts = tuple(sentences(text))
        matrix = np.frombuffer(bytes(blob), dtype=np.float16).astype(np.float32)
        if not parts or matrix.size % len(parts):
            continue
        matrix = matrix.reshape(len(parts), -1)
        if len(_SENTENCES) >= _SENTENCES_MAX:
            break
        _SENTENCES[text] = (parts, matrix)
        added += 1
    return added


async def _passage_vectors(
    passages: list[PromptPassage],
) -> list[tuple[tuple[str, ...], np.ndarray]]:
    """Sentence vectors of the passages: from the cache, else on the inference thread."""
    if all(p.text in _SENTENCES for p in passages):
        return [_SENTENCES[p.text] for p in passages]
    return await inference_run(lambda: [_sentence_vectors(p.text) for p in passages])


def answer_compose(
    *,
    question_vector: np.ndarray,
    passages: list[PromptPassage],
    sentence_vectors: list[tuple[tuple[str, ...], np.ndarray]],
    max_sentences: int = 3,
) -> str:
    """The most relevant sentences of the best passage (and of a close second), cited."""
    if not passages:
        return ""
    picked: list[tuple[PromptPassage, list[str]]] = []
    best_overall = None
    for passage, (parts, matrix) in zip(passages, sentence_vectors, strict=True):
        if not parts:
            continue
        scores = matrix @ question_vector
        best = float(scores.max())
        if best_overall is None:
            best_overall = best
        elif best < best_overall - 0.05 or len(picked) >= 2:
            break
        budget = max_sentences if not picked else 1
        top = sorted(np.argsort(-scores)[:budget].tolist())
        # Keep sentences reasonably close to the best one; always keep the best.
        chosen = [parts[i] for i in top if scores[i] >= best - 0.25]
        picked.append((passage, chosen))
    lines: list[str] = []
    previous = ""
    for passage, chosen in picked:
        quoted = f"{' '.join(chosen)} [{passage.number}]"
        if not lines:
            lines.append(f"From our help article \u201c{passage.title}\u201d: {quoted}")
        elif passage.slug == previous:  # another passage of the same article
            lines[-1] = f"{lines[-1]} {quoted}"
        else:
            lines.append(f"See also \u201c{passage.title}\u201d: {quoted}")
        previous = passage.slug
    return "\n\n".join(lines)


def _prompt_parts(messages: list[BaseMessage]) -> tuple[str, list[PromptPassage]]:
    system = next((m for m in messages if m.type == "system"), None)
    question = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
    passages = prompt_passages(str(system.content)) if system else []
    return (str(question.content) if question else ""), passages


class ExtractiveAnswerModel(BaseChatModel):
    """Answers with the passages' own sentences; no generation, no network."""

    model_name: str = f"extractive:{MODEL_NAME}"

    @property
    def _llm_type(self) -> str:
        return "loopdesk-extractive"

    def _answer_sync(self, messages: list[BaseMessage]) -> str:
        question, passages = _prompt_parts(messages)
        if not passages:
            return ""
        vectors = [_sentence_vectors(p.text) for p in passages]
        return answer_compose(
            question_vector=embed_texts([question])[0], passages=passages, sentence_vectors=vectors
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = self._answer_sync(messages)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        text = self._answer_sync(messages)
        if text:
            yield ChatGenerationChunk(message=AIMessageChunk(content=text))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        question, passages = _prompt_parts(messages)
        if not passages:
            return
        question_vector = await embed_query(question)
        vectors = await _passage_vectors(passages)
        text = answer_compose(
            question_vector=question_vector, passages=passages, sentence_vectors=vectors
        )
        # One chunk: the whole answer exists at once, and every chunk costs a trip through
        # the chain's callbacks (the turn coalesces the socket frames anyway).
        if text:
            yield ChatGenerationChunk(message=AIMessageChunk(content=text))
