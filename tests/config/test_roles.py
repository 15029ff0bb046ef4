"""Roles are groups with model permissions; the demo command is idempotent."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.http import HttpRequest

from chat.models import Article
from config import roles
from config.demo import DEMO_USERS, demo_articles

pytestmark = pytest.mark.django_db


def test_every_permission_pattern_matches_a_real_permission():
    for role in roles.ROLES.values():
        for pattern in role.permissions:
            matched = roles.permissions_matching((pattern,))
            assert matched, f"{role.group}: {pattern} matches nothing"


def test_each_role_gets_only_its_own_permissions(make_user):
    agent = make_user(roles.AGENTS)
    reviewer = make_user(roles.REVIEWERS)
    engineer = make_user(roles.ML_ENGINEERS)
    customer = make_user(roles.CUSTOMERS)

    assert agent.has_perm("chat.view_conversation")
    assert not agent.has_perm("chat.delete_conversation")
    assert not agent.has_perm("labeling.view_datasetsnapshot")
    assert reviewer.has_perm("labeling.view_datasetsnapshot")
    assert not reviewer.has_perm("labeling.delete_datasetsnapshot")
    assert engineer.has_perm("labeling.add_datasetsnapshot")
    assert not engineer.has_perm("auth.change_user")
    assert not customer.is_staff
    assert not customer.get_all_permissions()


def test_roles_sync_is_repeatable():
    first = roles.roles_sync()
    second = roles.roles_sync()
    assert first == second
    assert Group.objects.count() == len(roles.ROLES)
    assert Group.objects.get(name=roles.ADMINS).permissions.count() == Permission.objects.count()


def test_load_demo_twice_changes_nothing(capsys):
    call_command("load_demo")
    users = list(get_user_model().objects.order_by("username").values_list("username", "password"))
    articles = list(Article.objects.order_by("slug").values_list("slug", "updated_at"))

    call_command("load_demo")

    assert "0 users and 0 articles created" in capsys.readouterr().out
    assert (
        list(get_user_model().objects.order_by("username").values_list("username", "password"))
        == users
    )
    assert list(Article.objects.order_by("slug").values_list("slug", "updated_at")) == articles
    assert len(articles) == len(demo_articles()) >= 30


def test_load_demo_keeps_a_password_the_user_changed():
    call_command("load_demo", verbosity=0)
    user = get_user_model().objects.get(username="agent")
    user.set_password("my-own-secret-123")
    user.save()

    call_command("load_demo", verbosity=0)

    user.refresh_from_db()
    assert user.check_password("my-own-secret-123")


@pytest.mark.parametrize("demo", DEMO_USERS, ids=lambda d: d.username)
def test_each_demo_login_works_where_its_role_may_go(client, demo):
    call_command("load_demo", verbosity=0)

    # django-axes checks every sign-in against its client address: login() needs a request.
    assert client.login(request=HttpRequest(), username=demo.username, password=demo.password)
    response = client.get("/admin/")

    if roles.ROLES[demo.role].staff:
        assert response.status_code == 200
    else:
        assert response.status_code == 302  # customers have no business in the admin


def test_demo_agents_start_on_duty_and_keep_their_choice():
    from escalation.models import AgentPresence
    from escalation.services.presence import agent_presence_set

    call_command("load_demo", verbosity=0)
    agent = get_user_model().objects.get(username="agent")
    assert AgentPresence.objects.get(agent=agent).on_duty

    agent_presence_set(agent=agent, on_duty=False)
    call_command("load_demo", verbosity=0)

    assert not AgentPresence.objects.get(agent=agent).on_duty
