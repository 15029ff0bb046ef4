"""The intent router decides: its rule, one policy per escalating category, and the old
VADER and phrase rules switched off (measured on the evaluation part, see
docs/intents.md: the router alone escalates better; they stay available in the admin).
"""

from django.db import migrations

SAFETY_NOTICE = (
    "For your safety: if you can do so safely, switch the device off at the wall or at "
    "the fuse box and keep away from it. If there is smoke, fire or sparks, or you smell "
    "gas, leave the room and call the emergency services (999 or 112) now; for gas, also "
    "call the gas emergency number and don't use switches."
)
MEDICAL_NOTICE = (
    "If someone is hurt or unwell, call the emergency services (999 or 112) now, don't "
    "wait for us. If a child may have swallowed a battery, go to an emergency department "
    "straight away, even if they seem fine."
)
SECURITY_NOTICE = (
    "While you wait: don't share any codes, passwords or card details with anyone; we "
    "never ask for them."
)

POLICIES = [
    # label, ticket priority, always escalate, customer notice
    ("medical", "urgent", True, MEDICAL_NOTICE),
    ("safety", "urgent", True, SAFETY_NOTICE),
    ("security", "high", True, SECURITY_NOTICE),
    ("vulnerable", "high", False, ""),
    ("legal", "high", False, ""),
    ("press", "high", False, ""),
    ("billing_dispute", "normal", False, ""),
    ("churn", "normal", False, ""),
    ("anger", "high", False, ""),
    ("sarcasm", "normal", False, ""),
    ("frustration", "normal", False, ""),
    ("human_request", "high", False, ""),
]

INTENT_RULE = {
    "name": "Intent router",
    "kind": "intent",
    "priority": 15,
    "ticket_priority": "normal",
    "description": "The intent router's class (chat/assistant/router.py); per-category "
    "thresholds, switches, priorities and customer notices are the intent policies.",
}

OLD_KEYWORDS = (
    "lawyer\nlawsuit\nattorney\nsue you\nlegal action\nchargeback\n"
    "close my account\ncancel my account\ndata breach"
)
KEYWORDS = "lawyer\nlawsuit\nattorney\nsue you\nlegal action\nchargeback\ndata breach"
SWITCHED_OFF = ("Clearly negative sentiment", "Customer asks for a person")


def seed(apps, schema_editor):
    rule_model = apps.get_model("escalation", "EscalationRule")
    policy_model = apps.get_model("escalation", "IntentPolicy")
    rule_model.objects.get_or_create(name=INTENT_RULE["name"], defaults=INTENT_RULE)
    for label, priority, always, notice in POLICIES:
        policy_model.objects.get_or_create(
            label=label,
            defaults={
                "ticket_priority": priority,
                "always_escalate": always,
                "customer_notice": notice,
            },
        )
    rule_model.objects.filter(name__in=SWITCHED_OFF).update(enabled=False)
    # "close/cancel my account" escalated calm questions about leaving (the label guide
    # says those are answered); only the seeded list is changed, never an edited one.
    rule_model.objects.filter(kind="keyword", patterns=OLD_KEYWORDS).update(patterns=KEYWORDS)


def unseed(apps, schema_editor):
    rule_model = apps.get_model("escalation", "EscalationRule")
    rule_model.objects.filter(name=INTENT_RULE["name"]).delete()
    apps.get_model("escalation", "IntentPolicy").objects.all().delete()
    rule_model.objects.filter(name__in=SWITCHED_OFF).update(enabled=True)
    rule_model.objects.filter(kind="keyword", patterns=KEYWORDS).update(patterns=OLD_KEYWORDS)


class Migration(migrations.Migration):
    dependencies = [("escalation", "0008_intent_policy_decision_model_version")]

    operations = [migrations.RunPython(seed, unseed)]
