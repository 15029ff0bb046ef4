"""Demo data: one user per role and the Brightwave knowledge base. Idempotent."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from chat.services import article_upsert, articles_embed_queue
from config import roles
from escalation.services.presence import agent_presence_ensure

DEMO_DIR = Path(settings.BASE_DIR) / "chat" / "demo"


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    role: str
    first_name: str
    last_name: str


DEMO_USERS = (
    DemoUser("customer", "demo-customer-pass", roles.CUSTOMERS, "Casey", "Customer"),
    DemoUser("agent", "demo-agent-pass", roles.AGENTS, "Alex", "Agent"),
    DemoUser("agent2", "demo-agent-pass", roles.AGENTS, "Sam", "Support"),
    DemoUser("reviewer", "demo-reviewer-pass", roles.REVIEWERS, "Robin", "Reviewer"),
    DemoUser("reviewer2", "demo-reviewer-pass", roles.REVIEWERS, "Kim", "Reviewer"),
    DemoUser("reviewer3", "demo-reviewer-pass", roles.REVIEWERS, "Jo", "Reviewer"),
    DemoUser("mlengineer", "demo-ml-pass", roles.ML_ENGINEERS, "Morgan", "Engineer"),
    DemoUser("admin", "demo-admin-pass", roles.ADMINS, "Ada", "Admin"),
)


def demo_articles() -> list[dict[str, str]]:
    return json.loads((DEMO_DIR / "articles.json").read_text())


@transaction.atomic
def demo_load() -> dict[str, int]:
    """Create what is missing; never overwrite what a user changed. Returns counts created."""
    roles.roles_sync()
    User = get_user_model()
    users_created = 0
    for demo in DEMO_USERS:
        role = roles.ROLES[demo.role]
        user, created = User.objects.get_or_create(
            username=demo.username,
            defaults={
                "first_name": demo.first_name,
                "last_name": demo.last_name,
                "email": f"{demo.username}@brightwave.example",
                "is_staff": role.staff,
                "is_superuser": demo.role == roles.ADMINS,
            },
        )
        if created:
            user.set_password(demo.password)
            user.save(update_fields=["password"])
            user.groups.add(Group.objects.get(name=role.group))
            if demo.role == roles.AGENTS:
                # On duty from the start: available whenever their console is open.
                agent_presence_ensure(agent=user, on_duty=True)
            users_created += 1
    articles_created = 0
    changed_ids = []
    for article in demo_articles():
        row, changed = article_upsert(
            slug=article["slug"],
            title=article["title"],
            body=article["body"],
            category=article.get("category", ""),
            search_labels="\n".join(article.get("search_labels", [])),
            queue_embedding=False,
        )
        if changed:
            articles_created += 1
        if changed or row.embedded_at is None:  # new, edited, or never split into passages
            changed_ids.append(row.pk)
    # Embedded in the background after commit, a batch per task (one log line each).
    articles_embed_queue(article_ids=changed_ids)
    return {"users": users_created, "articles": articles_created}
