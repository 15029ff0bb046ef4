from django.apps import AppConfig


class LoopdeskConfig(AppConfig):
    """The project package doubles as an app for roles, health and platform commands."""

    name = "config"
    label = "loopdesk"
    verbose_name = "Loopdesk platform"
