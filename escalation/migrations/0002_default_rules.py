"""Default escalation rules and canned replies (editable in the admin afterwards)."""

from django.db import migrations

RULES = [
    {
        "name": "Harmful or toxic content",
        "kind": "toxicity",
        "priority": 10,
        "threshold": 0.4,
        "upper_threshold": 0.6,
        "ticket_priority": "high",
        "description": "Amazon Comprehend DetectToxicContent (when USE_COMPREHEND): below 0.4 "
        "proceed, 0.4-0.6 a person reviews, above 0.6 harmful (blocked).",
    },
    {
        "name": "Customer asks for a person",
        "kind": "human_request",
        "priority": 20,
        "ticket_priority": "high",
        "patterns": "\n".join(
            [
                "talk to a person",
                "talk to a human",
                "speak to a person",
                "speak to a human",
                "real person",
                "human agent",
                "live agent",
                "customer service representative",
                r"re:\b(talk|speak|chat)\s+(to|with)\s+(a|an|some|your)?\s*"
                r"(human|person|agent|representative|someone|manager|supervisor)\b",
                r"re:\b(want|need)\s+(a|an)\s+(human|person|agent)\b",
            ]
        ),
        "description": "The words of the customer ask for a person (the button always does).",
    },
    {
        "name": "Legal or account closure keywords",
        "kind": "keyword",
        "priority": 30,
        "ticket_priority": "urgent",
        "patterns": "lawyer\nlawsuit\nattorney\nsue you\nlegal action\nchargeback\n"
        "close my account\ncancel my account\ndata breach",
        "description": "Organisation keywords that always need a person.",
    },
    {
        "name": "Clearly negative sentiment",
        "kind": "negative_sentiment",
        "priority": 40,
        "threshold": -0.5,
        "ticket_priority": "high",
        "description": "Bedrock: the blog's 0/1 answer; local: VADER compound <= threshold.",
    },
    {
        "name": "Assistant failed",
        "kind": "provider_failure",
        "priority": 50,
        "ticket_priority": "normal",
        "description": "The model provider failed or timed out on a turn.",
    },
    {
        "name": "Repeated \"I don't know\"",
        "kind": "repeated_no_answer",
        "priority": 60,
        "count": 2,
        "ticket_priority": "normal",
        "description": "The knowledge base had no answer this many turns in a row.",
    },
]

CANNED = [
    ("Greeting", "Hi, I'm from the support team and I'm taking over from the assistant. "
     "How can I help?"),
    ("Looking into it", "Thanks for your patience, I'm looking into this for you now."),
    ("Anything else", "Is there anything else I can help you with today?"),
]


def seed(apps, schema_editor):
    rule_model = apps.get_model("escalation", "EscalationRule")
    canned_model = apps.get_model("escalation", "CannedReply")
    for rule in RULES:
        rule_model.objects.get_or_create(name=rule["name"], defaults=rule)
    for position, (title, body) in enumerate(CANNED):
        canned_model.objects.get_or_create(
            title=title, defaults={"body": body, "position": position}
        )


def unseed(apps, schema_editor):
    apps.get_model("escalation", "EscalationRule").objects.filter(
        name__in=[r["name"] for r in RULES]
    ).delete()
    apps.get_model("escalation", "CannedReply").objects.filter(
        title__in=[title for title, _ in CANNED]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("escalation", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
