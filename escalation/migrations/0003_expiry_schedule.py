"""The django-q2 schedule that closes open tickets nobody took (SendTaskFailure)."""

from django.db import migrations

SCHEDULE_NAME = "escalation: expire untaken tickets"


def create_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.get_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "escalation.tasks.tickets_expire_task",
            "schedule_type": "I",
            "minutes": 15,
            "repeats": -1,
        },
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("escalation", "0002_default_rules"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
