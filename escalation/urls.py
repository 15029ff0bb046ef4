from django.urls import path

from escalation import views

app_name = "escalation"

urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("conversations/<uuid:conversation_id>/", views.conversation_detail, name="conversation"),
]
