from django.contrib import admin
from django.urls import include, path, register_converter

from accounts.api.auth import LogoutView, SessionTokenView, TokenObtainView, TokenRefreshView, TokenVerifyView
from accounts.api.automation import AutomationSettingsView
from accounts.api.keys import ApiKeyDetailView, ApiKeyListView
from accounts.api.members import MemberDetailView, MemberListView
from accounts.views import ApiTokenPage
from agents.api.views import AgentDetailView, AgentListView
from agents.views import ModelDetailView, ModelListView
from config.health import healthz, readyz
from config.inputs import PathIdConverter
from config.openapi.views import DocsView, SchemaView
from sessions.api.chat import chat_completions, nlx_chat_completions, turn_events
from sessions.api.sessions import (
    SessionDetailView,
    SessionExportView,
    SessionForkView,
    SessionListView,
    TurnCancelView,
    TurnDetailView,
)
from sessions.api.usage import UsageView

# Every id in a path is an <id:…>: text no id can hold (a NUL, a space) is a 404 here, before any view.
register_converter(PathIdConverter, "id")

urlpatterns = [
    path("admin/", admin.site.urls),
    # Signing in: JWT pairs for the API; allauth's browser sign-in (passwords, identity providers).
    path("v1/auth/token", TokenObtainView.as_view(), name="auth-token"),
    path("v1/auth/token/refresh", TokenRefreshView.as_view(), name="auth-token-refresh"),
    path("v1/auth/token/verify", TokenVerifyView.as_view(), name="auth-token-verify"),
    path("v1/auth/logout", LogoutView.as_view(), name="auth-logout"),
    path("v1/auth/oidc/token", SessionTokenView.as_view(), name="auth-oidc-token"),
    path("accounts/api-token/", ApiTokenPage.as_view(), name="account-api-token"),
    path("accounts/", include("allauth.urls")),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    # The API's OpenAPI description and its docs page (config/openapi/); both public.
    path("v1/openapi.json", SchemaView.as_view(), name="openapi-schema"),
    path("v1/docs", DocsView.as_view(), name="docs"),
    path("v1/chat/completions", chat_completions, name="chat-completions"),
    # The same endpoint where other platforms' clients call it: each route its own name; the
    # schema documents them as aliases of the first (the same view).
    path("api/v1/chat/completions", chat_completions, name="chat-completions-api-v1"),
    path("api/ai/chat/completions", chat_completions, name="chat-completions-api-ai"),
    path("v1/models", ModelListView.as_view(), name="models"),
    path("v1/models/<id:slug>", ModelDetailView.as_view(), name="model-detail"),
    path("v1/agents", AgentListView.as_view(), name="agents"),
    path("v1/agents/<id:slug>", AgentDetailView.as_view(), name="agent-detail"),
    path("v1/sessions", SessionListView.as_view(), name="sessions"),
    path("v1/sessions/<id:session_id>", SessionDetailView.as_view(), name="session-detail"),
    path("v1/sessions/<id:session_id>/export", SessionExportView.as_view(), name="session-export"),
    path("v1/sessions/<id:session_id>/fork", SessionForkView.as_view(), name="session-fork"),
    path("v1/settings/automation", AutomationSettingsView.as_view(), name="automation-settings"),
    path("v1/turns/<id:turn_id>", TurnDetailView.as_view(), name="turn-detail"),
    path("v1/turns/<id:turn_id>/events", turn_events, name="turn-events"),
    path("v1/turns/<id:turn_id>/cancel", TurnCancelView.as_view(), name="turn-cancel"),
    path("v1/api-keys", ApiKeyListView.as_view(), name="api-keys"),
    path("v1/api-keys/<id:key_id>", ApiKeyDetailView.as_view(), name="api-key-detail"),
    path("v1/members", MemberListView.as_view(), name="members"),
    path("v1/members/<id:user_id>", MemberDetailView.as_view(), name="member-detail"),
    path("v1/usage", UsageView.as_view(), name="usage"),
    # NLX-style; last, so that it never shadows the paths above.
    path("<id:deployment>/<id:channel>/chat/completions", nlx_chat_completions, name="nlx-chat-completions"),
]
