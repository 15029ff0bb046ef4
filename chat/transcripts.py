"""Chat transcripts: one JSON object per conversation in the configured storage.

As in the blog, transcripts are what the offline feedback workflow (labeling) reads:
local media by default, S3 through django-storages when ``USE_S3_STORAGE`` is on. The
code only talks to ``default_storage``; which one it is, settings decide.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from chat.models import Conversation, CustomerFeedback, Message
from chat.services import turn_summary

TRANSCRIPT_FORMAT = "loopdesk.chat-transcript/1"


def transcript_path(conversation: Conversation) -> str:
    """``transcripts/<yyyy>/<mm>/<conversation id>.json``: stable, so re-exports replace."""
    created = conversation.created_at
    return f"transcripts/{created:%Y}/{created:%m}/{conversation.pk}.json"


def transcript_build(*, conversation: Conversation) -> dict[str, Any]:
    """The whole conversation, internal checks and withheld drafts included (this is an
    internal record for reviewers, never shown to the customer)."""
    messages = (
        Message.objects.filter(conversation=conversation)
        .select_related("author", "reply_to", "turn")
        .order_by("seq")
    )
    feedback = CustomerFeedback.objects.filter(conversation=conversation).select_related("message")
    customer = conversation.customer
    return {
        "format": TRANSCRIPT_FORMAT,
        "conversation_id": str(conversation.pk),
        "title": conversation.title,
        "channel": conversation.channel,
        "status": conversation.status,
        "handling": conversation.handling,
        "customer": customer.get_username() if customer else None,
        "visitor_id": conversation.visitor_id or None,
        "needs_attention": conversation.needs_attention,
        "attention_reason": conversation.attention_reason,
        "created_at": conversation.created_at.isoformat(),
        "ended_at": conversation.ended_at.isoformat() if conversation.ended_at else None,
        "exported_at": timezone.now().isoformat(),
        "messages": [
            {
                "seq": m.seq,
                "role": m.role,
                "visibility": m.visibility,
                "author": m.author.get_username() if m.author else None,
                "text": m.text,
                "sources": m.sources,
                "marker": m.marker,
                "turn": turn_summary(m.turn) if m.turn_id else None,
                "provider": m.provider,
                "model_name": m.model_name,
                "adapter": m.adapter,
                "latency_ms": m.latency_ms,
                "reply_to_seq": m.reply_to.seq if m.reply_to else None,
                "created_at": m.created_at.isoformat(),
            }
            for m in messages
        ],
        "feedback": [
            {
                "score": f.score,
                "score_label": f.get_score_display(),
                "message_seq": f.message.seq if f.message else None,
                "better_answer": f.better_answer,
                "comment": f.comment,
                "created_at": f.created_at.isoformat(),
            }
            for f in feedback
        ],
    }


def transcript_export(*, conversation: Conversation) -> str:
    """Write the transcript to the default storage; returns its storage path.

    Exporting again replaces the object (same path), so a re-run never leaves copies.
    """
    path = transcript_path(conversation)
    body = json.dumps(transcript_build(conversation=conversation), ensure_ascii=False, indent=1)
    if default_storage.exists(path):
        default_storage.delete(path)
    return default_storage.save(path, ContentFile(body.encode("utf-8")))
