"""The django-q2 schedule that puts tickets whose assigned agent stayed silent back in
the queue (ESCALATION_ASSIGNEE_REPLY_SECONDS)."""

from django.db import migrations

SCHEDULE_NAME = "escalation: return tickets of silent assignees to the queue"


def create_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.get_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "escalation.tasks.tickets_return_silent_task",
            "schedule_type": "I",
            "minutes": 1,
            "repeats": -1,
        },
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("escalation", "0005_agent_capacity_and_ticket_queue"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
