"""The AI assistant: retrieval, the internal sentiment check and streamed answers.

Public API (the chat consumer and the API call only these)::

    prepared = await assistant_prepare(question=..., history=[{"role", "text"}, ...])
    deltas, info = assistant_stream(question=..., history=..., prepared=prepared,
                                    adapter_name="")
    async for delta in deltas: ...            # raises AssistantError on provider failure
    text, info = await assistant_draft(question=..., history=..., prepared=prepared)

The caller applies ``settings.ASSISTANT_TIMEOUT_SECONDS`` and records the latency.
``await assistant_warm_up()`` loads the models ahead of the first question (optional).
"""

from chat.assistant.chain import (
    assistant_draft,
    assistant_prepare,
    assistant_stream,
    assistant_warm_up,
)
from chat.assistant.contract import AssistantError, DraftInfo, Passage, Prepared

__all__ = [
    "AssistantError",
    "DraftInfo",
    "Passage",
    "Prepared",
    "assistant_draft",
    "assistant_prepare",
    "assistant_stream",
    "assistant_warm_up",
]
