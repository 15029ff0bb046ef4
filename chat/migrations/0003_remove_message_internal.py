from django.db import migrations


class Migration(migrations.Migration):
    """Signals live on ``Turn`` and markers in ``Message.marker`` now (0002 moved them);
    a migration of its own, so the data migration's updates commit first."""

    dependencies = [
        ("chat", "0002_turns"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="message",
            name="internal",
        ),
    ]
