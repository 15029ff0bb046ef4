"""The intent router version that ships with the code, live until another is made live."""

import json
from pathlib import Path

from django.db import migrations

SHIPPED = "router-1"


def register(apps, schema_editor):
    meta_path = Path(__file__).resolve().parent.parent / "assistant" / "routers" / SHIPPED / "meta.json"
    meta = json.loads(meta_path.read_text())
    figures = meta["evaluation"]
    version_model = apps.get_model("chat", "RouterVersion")
    version_model.objects.get_or_create(
        name=SHIPPED,
        defaults={
            "source": "shipped",
            "is_live": not version_model.objects.filter(is_live=True).exists(),
            "eval_precision": figures["escalate_precision"],
            "eval_recall": figures["escalate_recall"],
            "eval_accuracy": figures["accuracy"],
            "eval_fingerprint": figures["fingerprint"],
            "eval_critical_missed": figures["critical_missed"],
            "train_rows": meta["training"]["rows"],
        },
    )


def unregister(apps, schema_editor):
    apps.get_model("chat", "RouterVersion").objects.filter(name=SHIPPED).delete()


class Migration(migrations.Migration):
    dependencies = [("chat", "0006_intent_examples_router_versions")]

    operations = [migrations.RunPython(register, unregister)]
