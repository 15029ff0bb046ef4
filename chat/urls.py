from django.urls import path

from chat import views

app_name = "chat"

urlpatterns = [
    path("", views.chat_page, name="page"),
    path("chat/start/", views.conversation_start_view, name="start"),
]
