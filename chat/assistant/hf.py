"""The ``hf`` provider: a local transformers causal LM with PEFT LoRA adapters.

The base model is loaded once per process from ``settings.HF_BASE_MODEL_PATH`` (a local
folder; never a hub id). Several adapters stay loaded on that one base and are chosen
per call; at most ``settings.HF_MAX_LOADED_ADAPTERS`` are kept, the least recently used
is deleted first. Adapters are model-wide state, so one generation runs at a time (a
lock); generation runs in a worker thread and streams through ``TextIteratorStreamer``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from django.conf import settings
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from chat.assistant.adapters import GENERATOR, AdapterRef, adapter_resolve
from chat.assistant.contract import TOY_MODEL_MARKER, AssistantError, DraftInfo
from chat.events import db

_ROLES = {"system": "system", "human": "user", "ai": "assistant"}
_STREAM_TIMEOUT_SECONDS = 120.0
_STREAM_READERS = ThreadPoolExecutor(max_workers=32, thread_name_prefix="hf-stream")


def _adapter_key(ref: AdapterRef) -> str:
    """A PEFT-safe adapter name; a redeployed name with a new path is a new adapter."""
    digest = hashlib.sha1(str(ref.path).encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{re.sub(r'[^0-9A-Za-z_]', '_', ref.name)}_{digest}"


class HFRuntime:
    """One base model + tokenizer and the LoRA adapters loaded on it (LRU-bounded)."""

    def __init__(self, base_path: Path) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not base_path.is_dir():
            raise FileNotFoundError(f"HF_BASE_MODEL_PATH {base_path} is not a local folder")
        if (base_path / TOY_MODEL_MARKER).exists() and not settings.HF_ALLOW_TOY_MODEL:
            raise AssistantError(
                "the base model is the offline starter model, a mechanics-only toy whose "
                "answers are not fit for customers: point HF_BASE_MODEL_PATH at a real base "
                "model, or set HF_ALLOW_TOY_MODEL=true to serve the toy anyway (demos only) "
                f"[HF_BASE_MODEL_PATH={base_path}]"
            )
        self.base_path = base_path
        self.tokenizer = AutoTokenizer.from_pretrained(str(base_path), local_files_only=True)
        self.model: Any = AutoModelForCausalLM.from_pretrained(
            str(base_path), local_files_only=True
        )
        self.model.eval()
        self.loaded: OrderedDict[str, AdapterRef] = OrderedDict()
        self.evicted: list[str] = []
        self.cancelled_generations = 0
        self.lock = threading.Lock()

    # Called with ``self.lock`` held.
    def _activate(self, ref: AdapterRef | None) -> Any:
        """Make ``ref`` the active adapter (loading it, evicting the LRU one) and return
        the context to generate in (adapters disabled for the base model)."""
        from peft import PeftModel

        if ref is None:
            if isinstance(self.model, PeftModel):
                return self.model.disable_adapter()
            return nullcontext()
        key = _adapter_key(ref)
        if key not in self.loaded:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(ref.path), adapter_name=key)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(ref.path), adapter_name=key)
                self.model.eval()
            self.loaded[key] = ref
            limit = max(1, int(settings.HF_MAX_LOADED_ADAPTERS))
            while len(self.loaded) > limit:
                oldest = next(iter(self.loaded))
                self.model.delete_adapter(oldest)
                self.evicted.append(self.loaded.pop(oldest).name)
        self.loaded.move_to_end(key)
        self.model.set_adapter(key)
        return nullcontext()

    def _prompt_ids(self, messages: list[dict[str, str]], max_new_tokens: int) -> Any:
        if getattr(self.tokenizer, "chat_template", None):
            prompt = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        else:
            prompt = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
        ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        window = int(getattr(self.model.config, "max_position_embeddings", 2048))
        # Keep the end of the prompt (the question) when passages make it too long.
        return ids[:, -max(8, window - max_new_tokens) :]

    def start(
        self, *, messages: list[dict[str, str]], adapter: AdapterRef | None, max_new_tokens: int
    ) -> tuple[Iterator[str], threading.Event]:
        """Start greedy generation in a worker thread.

        Returns the text pieces as they are produced and an event that stops the
        generation at the next token when set (the reader gave up: timeout, disconnect).
        """
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        streamer = TextIteratorStreamer(
            self.tokenizer,
            skip_prompt=True,
            skip_special_tokens=True,
            timeout=_STREAM_TIMEOUT_SECONDS,
        )
        cancel = threading.Event()
        errors: list[BaseException] = []
        runtime = self

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                if cancel.is_set():
                    runtime.cancelled_generations += 1
                    return True
                return False

        def work() -> None:
            try:
                with self.lock:
                    if cancel.is_set():
                        return
                    context = self._activate(adapter)
                    input_ids = self._prompt_ids(messages, max_new_tokens)
                    with torch.inference_mode(), context:
                        self.model.generate(
                            input_ids=input_ids,
                            attention_mask=torch.ones_like(input_ids),
                            max_new_tokens=max_new_tokens,
                            do_sample=False,
                            streamer=streamer,
                            stopping_criteria=StoppingCriteriaList([_Cancel()]),
                            pad_token_id=self.tokenizer.pad_token_id,
                        )
            except BaseException as exc:
                errors.append(exc)
            finally:
                streamer.end()

        def pieces() -> Iterator[str]:
            for text in streamer:
                if text:
                    yield text
            if errors:
                raise errors[0]

        threading.Thread(target=work, name="hf-generate", daemon=True).start()
        return pieces(), cancel


_runtimes: dict[str, HFRuntime] = {}
_runtimes_lock = threading.Lock()


def hf_runtime() -> HFRuntime:
    """The process's runtime for ``settings.HF_BASE_MODEL_PATH`` (loaded on first use)."""
    path = str(settings.HF_BASE_MODEL_PATH)
    with _runtimes_lock:
        runtime = _runtimes.get(path)
        if runtime is None:
            runtime = _runtimes[path] = HFRuntime(Path(path))
        return runtime


class HFChatModel(BaseChatModel):
    """LangChain chat model over the shared runtime, with one adapter (or none)."""

    runtime: Any
    adapter: Any = None  # AdapterRef | None
    max_new_tokens: int = 64

    @property
    def _llm_type(self) -> str:
        return "loopdesk-hf"

    def _as_dicts(self, messages: list[BaseMessage]) -> list[dict[str, str]]:
        return [{"role": _ROLES.get(m.type, "user"), "content": str(m.content)} for m in messages]

    def _start(self, messages: list[BaseMessage]) -> tuple[Iterator[str], threading.Event]:
        started: tuple[Iterator[str], threading.Event] = self.runtime.start(
            messages=self._as_dicts(messages),
            adapter=self.adapter,
            max_new_tokens=self.max_new_tokens,
        )
        return started

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        pieces, cancel = self._start(messages)
        try:
            for text in pieces:
                if run_manager:
                    run_manager.on_llm_new_token(text)
                yield ChatGenerationChunk(message=AIMessageChunk(content=text))
        finally:
            cancel.set()

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        pieces, cancel = self._start(messages)
        loop = asyncio.get_running_loop()
        try:
            while True:
                # Waiting for the next piece happens in a thread: the loop stays free. Own
                # pool: queued generations must not starve the default executor.
                text = await loop.run_in_executor(_STREAM_READERS, next, pieces, None)
                if text is None:
                    break
                if run_manager:
                    await run_manager.on_llm_new_token(text)
                yield ChatGenerationChunk(message=AIMessageChunk(content=text))
        finally:
            # Also on cancellation (the caller's timeout) or an early close.
            cancel.set()

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = "".join(str(c.message.content) for c in self._stream(messages, stop, run_manager))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


async def hf_chat_model(*, adapter_name: str, info: DraftInfo) -> HFChatModel:
    """Resolve the adapter (the named one, else the live one, else none), load the base
    model in a thread on first use, and record the adapter used in ``info``."""
    ref = await db(adapter_resolve)(kind=GENERATOR, slot=adapter_name)
    runtime = await asyncio.to_thread(hf_runtime)
    info.adapter = ref.name if ref is not None else ""
    return HFChatModel(runtime=runtime, adapter=ref, max_new_tokens=int(settings.HF_MAX_NEW_TOKENS))
