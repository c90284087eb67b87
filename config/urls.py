from django.contrib import admin
from django.urls import path

from agents.views import ModelDetailView, ModelListView
from config.health import healthz, readyz
from sessions.api.views import SessionDetailView, SessionListView, chat_completions

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz),
    path("readyz", readyz),
    path("v1/chat/completions", chat_completions),
    path("api/v1/chat/completions", chat_completions),
    path("api/ai/chat/completions", chat_completions),
    path("v1/models", ModelListView.as_view()),
    path("v1/models/<str:slug>", ModelDetailView.as_view()),
    path("v1/sessions", SessionListView.as_view()),
    path("v1/sessions/<str:session_id>", SessionDetailView.as_view()),
]
