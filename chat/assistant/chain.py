"""The assistant: prepare (retrieval and the internal checks, before any draft is shown)
and answer (prompt -> chat model -> text, the same for every provider: LangChain's
ChatPromptTemplate and chat models, ChatBedrockConverse included).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, cast

from django.conf import settings
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

from chat.assistant.adapters import RETRIEVER, AdapterRef, adapter_current
from chat.assistant.contract import (
    BAND_CONFIDENT,
    BAND_DONT_KNOW,
    BAND_HEDGED,
    SUPPORT_TEAM_TITLE,
    AssistantError,
    DraftInfo,
    Passage,
    Prepared,
    Retrieval,
    SupportAnswerMatch,
)
from chat.assistant.embeddings import MODEL_NAME, Encoding, encode_query
from chat.assistant.knowledge import knowledge_answer, knowledge_index_current
from chat.assistant.memory import memory_index_current, memory_match
from chat.assistant.offers import PERSON_OFFER, offer_reply_intent, person_offered
from chat.assistant.providers import Provider, provider_current
from chat.assistant.repeats import intent_after_repeat, question_repeated
from chat.assistant.replies import OUT_OF_SCOPE, small_talk_reply

logger = logging.getLogger(__name__)

PERSON_OFFER_TEXT = f"{PERSON_OFFER} You can also press \u201cTalk to a person\u201d."
NO_ANSWER_TEXT = (
    f"I'm sorry, I don't know the answer to that, and I'd rather not guess. {PERSON_OFFER_TEXT}"
)
# The hedged band: the closest article is cited, but the reply says plainly that it may
# not answer, and offers a person the same way as the "I don't know".
HEDGE_OPENING = "I'm not certain this answers your question, but this is the closest I found."
HISTORY_TURNS = 10

ANSWER_SYSTEM = (
    "You are Brightwave's customer support assistant. Answer the customer's last "
    "question using only the knowledge-base passages below, briefly and politely. "
    "Cite the passages you used by their number, like [1]. If the passages do not "
    "answer the question, say that you don't know and offer to connect the customer "
    "with a person.\n\nPassages:\n\n{context}"
)
ANSWER_PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", ANSWER_SYSTEM),
        MessagesPlaceholder("history"),
        ("human", "{question}"),
    ]
)


def passages_context(passages: list[Passage]) -> str:
    """Numbered passages, ``[n] Title (slug)`` then the text (the local model parses this)."""
    return "\n\n".join(
        f"[{n}] {p.title} ({p.slug})\n{p.text}" for n, p in enumerate(passages, start=1)
    )


def history_messages(history: list[dict[str, Any]], question: str) -> list[BaseMessage]:
    """Customer turns as human, assistant/agent turns as AI; system notices dropped.

    Consecutive turns of one side are merged and the history starts with the customer
    (Bedrock's Converse requires alternating turns starting with the user).
    """
    turns: list[tuple[str, str]] = []
    for item in history[-HISTORY_TURNS * 2 :]:
        role, text = item.get("role"), str(item.get("text") or "").strip()
        if not text or role not in {"customer", "assistant", "agent"}:
            continue
        side = "human" if role == "customer" else "ai"
        if turns and turns[-1][0] == side:
            turns[-1] = (side, f"{turns[-1][1]}\n\n{text}")
        else:
            turns.append((side, text))
    # The current question is sent separately; don't repeat it.
    if turns and turns[-1] == ("human", question.strip()):
        turns.pop()
    while turns and turns[0][0] != "human":
        turns.pop(0)
    if turns and turns[-1][0] == "human":
        # The prompt's own human turn follows: keep the roles alternating.
        turns.append(("ai", "(no answer was given)"))
    return [HumanMessage(text) if side == "human" else AIMessage(text) for side, text in turns]


def _with_previous_question(question: str, history: list[dict[str, Any]]) -> str:
    previous = [h["text"] for h in history if h.get("role") == "customer" and h.get("text")]
    previous = [p for p in previous if p.strip() != question.strip()]
    return f"{previous[-1]}\n{question}" if previous else question


def retrieval_query(question: str, history: list[dict[str, Any]]) -> str:
    """A short follow-up ("and on 5 GHz?") is searched together with the previous question."""
    if len(re.findall(r"\w+", question)) >= 6:
        return question
    return _with_previous_question(question, history)


# A longer message that continues the previous question ("and can I do it in the app?").
_CONTINUES = re.compile(r"^\W*(and|also|plus|or|but|what about|how about|what if)\b", re.I)

_BAND_RANK = {BAND_DONT_KNOW: 0, BAND_HEDGED: 1, BAND_CONFIDENT: 2}


def follow_up_query(question: str, history: list[dict[str, Any]]) -> str | None:
    """For a message that starts like a continuation ("and ...", "what about ...") and
    was searched on its own: the query with the customer's previous question, tried when
    the message alone did not find a confident answer. None otherwise."""
    if retrieval_query(question, history) != question or not _CONTINUES.match(question):
        return None
    combined = _with_previous_question(question, history)
    return combined if combined != question else None


async def retrieval_adapter(provider: Provider, slot: str = "") -> AdapterRef | None:
    """The retriever adapter live for ``slot`` (or the organisation's default), when the
    provider embeds with MiniLM (the adapter is MiniLM's); else None."""
    if provider.embedder.name != MODEL_NAME:
        return None
    return await adapter_current(kind=RETRIEVER, slot=slot)


async def retrieval_encode(provider: Provider, text: str, adapter: AdapterRef | None) -> Encoding:
    """The question as the retriever sees it (sentence and token vectors): the one place
    a per-request retriever adapter plugs in.

    With a retriever ``adapter`` (``retrieval_adapter``), the question goes through the
    encoder with that adapter; passages keep the base encoder's vectors (the adapter is
    trained for that). An adapter that cannot be loaded is logged and the base encoder
    answers: it never stops the chat."""
    if adapter is not None:
        try:
            return await encode_query(text, adapter_path=str(adapter.path))
        except Exception:
            logger.exception("retriever adapter %s failed; base encoder used", adapter.name)
    return await provider.embedder.encode_query(text)


async def _retrieve(
    provider: Provider, query: str, adapter: AdapterRef | None
) -> tuple[list[Passage], Retrieval]:
    """Hybrid retrieval (``knowledge_search``) and the calibrated answer-or-not decision:
    no passages when the knowledge base does not answer."""
    encoding = await retrieval_encode(provider, query, adapter)
    index = await knowledge_index_current(embedding_model=provider.embedder.name)
    return knowledge_answer(
        index=index,
        query=encoding,
        query_text=query,
        embedding_model=provider.embedder.name,
        top_k=settings.ASSISTANT_TOP_K,
    )


async def _remembered(provider: Provider, query: str) -> SupportAnswerMatch | None:
    """The approved answer from the support team for this question, if one matches
    (``chat.assistant.memory``). Compared by the base encoder, never a retriever
    adapter: the approved questions were embedded by it. Nothing is encoded while the
    memory is empty."""
    index = await memory_index_current(embedding_model=provider.embedder.name)
    if not index.size:
        return None
    encoding = await provider.embedder.encode_query(query)
    return memory_match(index=index, vector=encoding.vector, question=query)


def support_answer_text(match: SupportAnswerMatch) -> str:
    """The reply when the support team's approved answer matched: that answer, cited,
    and its article if it concerns one."""
    text = f"{SUPPORT_TEAM_TITLE}: {match.answer} [1]"
    if match.article_slug:
        text += f"\n\nSee also our help article \u201c{match.article_title}\u201d [2]."
    return text


async def assistant_warm_up() -> None:
    """Load the provider's models now (in threads) rather than on the first customer's
    question; call it when a server process starts. Repeat calls cost nothing.
    Raises ``AssistantError`` if a model cannot be loaded."""
    provider = provider_current()
    try:
        await provider.warm_up()
    except Exception as exc:
        raise AssistantError(f"{provider.name} provider failed to load: {exc}") from exc


async def assistant_prepare(
    *, question: str, history: list[dict[str, Any]], adapter_name: str = ""
) -> Prepared:
    """Retrieve passages and run the internal checks (sentiment, the intent router),
    concurrently. The router's MiniLM vector of the message is computed in the same
    micro-batched encoder call as the retrieval query (one pass when they are the same
    text, with or without a top-layer retriever adapter). ``adapter_name`` is the
    conversation's adapter slot (its retriever adapter, else the organisation's live
    one, is used for retrieval).

    Raises ``AssistantError`` when the provider fails. Nothing here is customer-facing.
    """
    provider = provider_current()
    query = retrieval_query(question, history)
    # The retriever adapter is looked up first (a database read every few seconds), so
    # that the retrieval query and the router's message reach the encoder together: with
    # a top-layer adapter both vectors come from one pass through the lower layers.
    try:
        adapter = await retrieval_adapter(provider, adapter_name)
    except Exception as exc:
        raise AssistantError(f"{provider.name} provider failed to prepare: {exc}") from exc
    # All run to the end even if one fails: no call is left running unobserved.
    retrieved, remembered, sentiment, intent = await asyncio.gather(
        _retrieve(provider, query, adapter),
        _remembered(provider, query),
        provider.sentiment(question),
        provider.intent(question),
        return_exceptions=True,
    )
    for outcome in (retrieved, remembered, sentiment, intent):
        if isinstance(outcome, AssistantError):
            raise outcome
        if isinstance(outcome, BaseException):
            raise AssistantError(f"{provider.name} provider failed to prepare: {outcome}") from (
                outcome
            )
    assert not isinstance(retrieved, BaseException)
    assert not isinstance(remembered, BaseException)
    assert not isinstance(sentiment, BaseException)
    assert not isinstance(intent, BaseException)
    passages, retrieval = retrieved
    follow_up = follow_up_query(question, history)
    if follow_up is not None and remembered is None and retrieval.band != BAND_CONFIDENT:
        # "and can I do it in the app?" alone is about nothing; with the previous question
        # it is about meter readings. Kept only if it finds a surer answer than alone, so
        # a new question that merely starts with "and" keeps its own reading.
        try:
            combined = await _retrieve(provider, follow_up, adapter)
        except Exception as exc:
            raise AssistantError(f"{provider.name} provider failed to prepare: {exc}") from exc
        if _BAND_RANK[combined[1].band] > _BAND_RANK[retrieval.band]:
            passages, retrieval = combined
    if remembered is not None:
        # The team's approved answer is the reply, whatever the articles' confidence
        # (``retrieval`` keeps the knowledge base's scores; the turn records the match).
        passages = remembered.passages(retrieved=passages)
        retrieval = dataclasses.replace(retrieval, no_answer=False, band=BAND_CONFIDENT)
    if intent is not None and provider.name != "bedrock" and person_offered(history, question):
        # A reply to the assistant's offer of a person ("yes", "no thanks") means what it
        # means in the conversation, not on its own (``chat.assistant.offers``).
        try:
            intent = await offer_reply_intent(intent, question)
        except Exception as exc:
            raise AssistantError(f"{provider.name} provider failed to prepare: {exc}") from exc
    if intent is not None and question_repeated(history, question):
        # The same question again after the answer: it did not help (``chat.assistant.repeats``).
        intent = intent_after_repeat(intent, question)
    return Prepared(
        passages=passages,
        sentiment=sentiment,
        retrieval=retrieval,
        intent=intent,
        support_answer=remembered,
    )


def answer_messages(
    *, question: str, history: list[dict[str, Any]], passages: list[Passage]
) -> list[BaseMessage]:
    """The answer prompt (LangChain's ``ChatPromptTemplate``) for the chat model: the
    numbered passages, the conversation so far, the question."""
    return ANSWER_PROMPT.format_messages(
        context=passages_context(passages),
        history=history_messages(history, question),
        question=question,
    )


def _text_chunks(text: str, words: int = 3) -> list[str]:
    parts = re.findall(r"\S+\s*", text)
    return ["".join(parts[i : i + words]) for i in range(0, len(parts), words)]


async def _chunks_of(text: str) -> AsyncIterator[str]:
    for chunk in _text_chunks(text):
        yield chunk


def assistant_stream(
    *,
    question: str,
    history: list[dict[str, Any]],
    prepared: Prepared,
    adapter_name: str = "",
    route: str = "answer",
) -> tuple[AsyncIterator[str], DraftInfo]:
    """Text deltas of the reply for ``route`` (token by token when the model streams)
    and its origin.

    ``answer``: the support team's approved answer when one matched
    (``prepared.support_answer``), else from the knowledge base; hedged
    (``prepared.hedged``): the answer from the closest article between "I'm not certain
    this answers your question" and the offer of a person; with ``prepared.no_answer`` an
    honest "I don't know" and the offer of a person. ``small_talk``: a short friendly
    reply. ``out_of_scope``: a polite refusal that offers a person. Provider failures
    raise ``AssistantError`` from the iterator; the caller applies the timeout.
    ``info.adapter`` is filled in when streaming starts.
    """
    provider = provider_current()
    info = DraftInfo(provider=provider.name, model_name=provider.model_name, adapter="")
    if route == "small_talk":
        return _chunks_of(small_talk_reply(question)), info
    if route == "out_of_scope":
        return _chunks_of(OUT_OF_SCOPE), info

    async def deltas() -> AsyncIterator[str]:
        if prepared.support_answer is not None:
            # Approved words are quoted as approved: no model rewrites them.
            for chunk in _text_chunks(support_answer_text(prepared.support_answer)):
                yield chunk
            return
        if prepared.no_answer:
            for chunk in _text_chunks(NO_ANSWER_TEXT):
                yield chunk
            return
        try:
            model = await provider.chat_model(adapter_name=adapter_name, info=info)
            messages = answer_messages(
                question=question, history=history, passages=prepared.passages
            )
            produced = False
            # prompt -> model -> text, streamed from the chat model itself: composed as an
            # LCEL sequence the same steps cost 3-4 ms more per turn in streaming plumbing
            # (bench/turn_cpu.py), more than the quoting model's whole answer.
            # aclosing: when the caller stops reading (timeout), the model stream is
            # closed at once, which stops a local generation.
            answer_stream = cast(AsyncGenerator[Any, None], model.astream(messages))
            async with aclosing(answer_stream) as answer:
                async for chunk in answer:
                    delta = chunk.text  # str content or the text of content blocks
                    if delta:
                        if not produced and prepared.hedged:
                            yield f"{HEDGE_OPENING}\n\n"
                        produced = True
                        yield delta
        except AssistantError:
            raise
        except Exception as exc:
            raise AssistantError(f"{provider.name} provider failed to answer: {exc}") from exc
        if not produced:
            for chunk in _text_chunks(NO_ANSWER_TEXT):
                yield chunk
        elif prepared.hedged:
            yield f"\n\n{PERSON_OFFER_TEXT}"

    return deltas(), info


async def assistant_draft(
    *,
    question: str,
    history: list[dict[str, Any]],
    prepared: Prepared,
    adapter_name: str = "",
) -> tuple[str, DraftInfo]:
    """The whole answer at once (for drafts withheld from the customer)."""
    stream, info = assistant_stream(
        question=question, history=history, prepared=prepared, adapter_name=adapter_name
    )
    parts = [delta async for delta in stream]
    return "".join(parts).strip(), info
