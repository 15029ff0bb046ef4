"""Escalation services. The chat turn asks ``EscalationReviewer`` (registered with
``chat.review`` at start-up) whether a person is needed; the rest are the agents' and the
integrations' moves."""

from escalation.services.assignment import (
    NotSupervisor,
    queue_drain,
    queue_publish,
    ticket_reassign,
    ticket_return_if_silent,
    tickets_return_from_agent,
    tickets_return_silent,
)
from escalation.services.decisions import (
    EscalationReviewer,
    rules_evaluate,
    toxicity_band,
)
from escalation.services.events import (
    event_record,
    retry_delay_seconds,
    signature_for,
    webhook_delivery_attempt,
)
from escalation.services.knowledge import (
    knowledge_draft_create,
    knowledge_draft_review,
    ticket_reply_approve,
)
from escalation.services.presence import (
    agent_capacity_set,
    agent_presence_set,
    agent_presence_touch,
    agents_available,
)
from escalation.services.rules import (
    escalation_rule_delete,
    escalation_rule_save,
    intent_policy_save,
    rule_book,
    rules_changed,
)
from escalation.services.tickets import (
    EscalationError,
    TakeoverConflict,
    agent_conversation_group,
    agent_message_send,
    conversation_hand_back,
    conversation_take_over,
    escalation_open,
    note_add,
    ticket_claim,
    ticket_close,
    ticket_notify_agents,
    ticket_publish,
    ticket_resolve,
    tickets_expire,
    workflow_start_queue,
)
from escalation.services.workflows import (
    workflow_callback_answer,
    workflow_callback_register,
    workflow_start,
)

__all__ = [
    "EscalationError",
    "EscalationReviewer",
    "NotSupervisor",
    "TakeoverConflict",
    "agent_capacity_set",
    "agent_conversation_group",
    "agent_message_send",
    "agent_presence_set",
    "agent_presence_touch",
    "agents_available",
    "conversation_hand_back",
    "conversation_take_over",
    "escalation_open",
    "escalation_rule_delete",
    "escalation_rule_save",
    "event_record",
    "intent_policy_save",
    "knowledge_draft_create",
    "knowledge_draft_review",
    "note_add",
    "queue_drain",
    "queue_publish",
    "retry_delay_seconds",
    "rule_book",
    "rules_changed",
    "rules_evaluate",
    "signature_for",
    "ticket_claim",
    "ticket_close",
    "ticket_notify_agents",
    "ticket_publish",
    "ticket_reassign",
    "ticket_reply_approve",
    "ticket_resolve",
    "ticket_return_if_silent",
    "tickets_expire",
    "tickets_return_from_agent",
    "tickets_return_silent",
    "toxicity_band",
    "webhook_delivery_attempt",
    "workflow_callback_answer",
    "workflow_callback_register",
    "workflow_start",
    "workflow_start_queue",
]
