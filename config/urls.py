from django.contrib import admin
from django.urls import path

from agents.api.views import AgentDetailView, AgentListView
from agents.views import ModelDetailView, ModelListView
from config.health import healthz, readyz
from sessions.api.views import (
    SessionDetailView,
    SessionListView,
    TurnCancelView,
    TurnDetailView,
    chat_completions,
    nlx_chat_completions,
    turn_events,
)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz),
    path("readyz", readyz),
    path("v1/chat/completions", chat_completions),
    path("api/v1/chat/completions", chat_completions),
    path("api/ai/chat/completions", chat_completions),
    path("v1/models", ModelListView.as_view()),
    path("v1/models/<str:slug>", ModelDetailView.as_view()),
    path("v1/agents", AgentListView.as_view()),
    path("v1/agents/<str:slug>", AgentDetailView.as_view()),
    path("v1/sessions", SessionListView.as_view()),
    path("v1/sessions/<str:session_id>", SessionDetailView.as_view()),
    path("v1/turns/<str:turn_id>", TurnDetailView.as_view()),
    path("v1/turns/<str:turn_id>/events", turn_events),
    path("v1/turns/<str:turn_id>/cancel", TurnCancelView.as_view()),
    # NLX-style; last, so that it never shadows the paths above.
    path("<str:deployment>/<str:channel>/chat/completions", nlx_chat_completions),
]
