"""What the run command tells the operator while it starts."""

from __future__ import annotations

import socket

import pytest
from django.core.management import call_command

from chat import services
from config.management.commands import runplatform

pytestmark = pytest.mark.django_db


def test_embedding_progress_is_reported_until_the_knowledge_base_is_ready(
    monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(runplatform, "EMBEDDING_PROGRESS_EVERY_SECONDS", 0)
    articles = [
        services.article_upsert(
            slug=f"a-{n}", title=f"A {n}", body="Restart.", queue_embedding=False
        )[0]
        for n in range(2)
    ]
    said: list[str] = []
    progress = runplatform.EmbeddingProgress(said.append)

    progress.report()
    services.articles_embed(article_ids=[articles[0].pk])
    progress.report()
    services.articles_embed(article_ids=[articles[1].pk])
    progress.report()
    progress.report()

    assert said == [
        "==> embedding the knowledge base in the background (2 of 2 articles to do)",
        "    knowledge base: 1 of 2 articles embedded",
        "==> knowledge base ready: 2 articles embedded",
    ]


def test_nothing_is_said_when_the_knowledge_base_was_already_embedded(monkeypatch):
    monkeypatch.setattr(runplatform, "EMBEDDING_PROGRESS_EVERY_SECONDS", 0)
    said: list[str] = []

    runplatform.EmbeddingProgress(said.append).report()

    assert said == []


def test_a_busy_port_is_named_with_the_way_to_choose_another(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as exited:
            call_command("runplatform", host="127.0.0.1", port=port)

    error = capsys.readouterr().err
    assert exited.value.code == 1
    assert f"Port {port} on 127.0.0.1 is already in use" in error
    assert "PORT=9000 scripts/run" in error


def test_port_comes_from_the_environment(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from tests.config.test_settings import ROOT

    probe = (
        "import django, json; django.setup(); "
        "from config.management.commands.runplatform import Command; "
        "print(json.dumps(vars(Command().create_parser('manage.py', 'runplatform')"
        ".parse_args([]))))"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"PORT", "DJANGO_DEBUG"}}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={
            **env,
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "LOOPDESK_VAR_DIR": str(tmp_path),
            "PORT": "9123",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["port"] == 9123


def test_the_provider_is_named(settings):
    settings.ASSISTANT_PROVIDER = "bedrock"
    settings.BEDROCK_MODEL_ID = "anthropic.claude-test"

    assert runplatform.Command._provider_said() == "Amazon Bedrock, anthropic.claude-test"


def test_several_web_processes_are_refused_without_the_redis_layer(settings, capsys):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SystemExit) as exited:
        call_command("runplatform", host="127.0.0.1", port=port, web_processes=2)

    assert exited.value.code == 1
    assert "set REDIS_URL to run several" in capsys.readouterr().err
