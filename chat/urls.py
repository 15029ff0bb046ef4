from django.urls import path

from chat import helpcenter, views

app_name = "chat"

urlpatterns = [
    path("", views.chat_page, name="page"),
    path("chat/start/", views.conversation_start_view, name="start"),
    path("help/", helpcenter.help_index, name="help"),
    path("help/<slug:slug>/", helpcenter.help_article, name="help-article"),
]
