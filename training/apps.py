from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"

    def ready(self) -> None:
        # The assistant asks for its live adapters through chat's registry: chat never
        # imports training.
        from chat.assistant.adapters import adapter_resolver_register
        from training.selectors import adapter_for_assistant

        adapter_resolver_register(adapter_for_assistant)
