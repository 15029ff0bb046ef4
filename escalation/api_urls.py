from django.urls import path
from rest_framework.routers import SimpleRouter

from escalation import api

router = SimpleRouter()
router.register("escalation/tickets", api.TicketViewSet, basename="escalation-ticket")
router.register("escalation/events", api.DomainEventViewSet, basename="escalation-event")
router.register("escalation/webhooks", api.WebhookViewSet, basename="escalation-webhook")

urlpatterns = [
    path(
        "escalation/callbacks/step-functions/",
        api.StepFunctionsCallbackView.as_view(),
        name="escalation-callback",
    ),
    path(
        "escalation/conversations/<uuid:conversation_id>/take-over/",
        api.ConversationTakeOverView.as_view(),
        name="escalation-take-over",
    ),
    path(
        "escalation/conversations/<uuid:conversation_id>/flag/",
        api.ConversationFlagView.as_view(),
        name="escalation-flag",
    ),
    path("escalation/presence/", api.PresenceView.as_view(), name="escalation-presence"),
    *router.urls,
]
