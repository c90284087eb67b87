"""Who may call what: one table for every endpoint, checked in one place.

The table maps an endpoint (its URL name) and an HTTP method to the permission a caller must
hold. A user holds the permissions of their role in the organization they act in; an API key
holds its scopes. DRF views check the table through `EndpointPermission` (the default permission
class); the async Django views call `require_permission` after authenticating. An endpoint that
the table does not name is refused: forgetting to list a new endpoint must fail closed."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest
from rest_framework.permissions import BasePermission

from accounts.models import ALL_SCOPES, Membership
from accounts.principal import Principal
from config.errors import AuthenticationFailed, PermissionDenied

if TYPE_CHECKING:
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)

CHAT = "chat"
SESSIONS_READ = "sessions:read"
SESSIONS_WRITE = "sessions:write"
ADMIN = "admin"
MEMBERS = "members"  # owners only: no API key ever holds it
# Not permissions but what the table may say instead of one.
PUBLIC = "public"  # anyone, with or without credentials
AUTHENTICATED = "authenticated"  # any caller with valid credentials
ANY_METHOD = "*"

_MEMBER = frozenset({CHAT, SESSIONS_READ, SESSIONS_WRITE})
_ADMIN = _MEMBER | {ADMIN}
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    Membership.Role.MEMBER: _MEMBER,
    Membership.Role.ADMIN: _ADMIN,
    Membership.Role.OWNER: _ADMIN | {MEMBERS},
}
# What a key may be given: every scope; `members` is not one.
KEY_SCOPES = frozenset(ALL_SCOPES)

ENDPOINT_PERMISSIONS: dict[str, dict[str, str]] = {
    # Chat and what it needs: the chat completions (and their aliases), the models list, and
    # following or stopping one's turns.
    "chat-completions": {"POST": CHAT},
    "chat-completions-api-v1": {"POST": CHAT},
    "chat-completions-api-ai": {"POST": CHAT},
    "nlx-chat-completions": {"POST": CHAT},
    "models": {"GET": CHAT},
    "model-detail": {"GET": CHAT},
    "turn-detail": {"GET": CHAT},
    "turn-events": {"GET": CHAT},
    "turn-cancel": {"POST": CHAT},
    # Sessions.
    "sessions": {"GET": SESSIONS_READ, "POST": SESSIONS_WRITE},
    "session-detail": {"GET": SESSIONS_READ, "PATCH": SESSIONS_WRITE, "DELETE": SESSIONS_WRITE},
    "session-export": {"GET": SESSIONS_READ},
    "session-fork": {"POST": SESSIONS_WRITE},
    # Agents: whoever chats may see them; admins change them.
    "agents": {"GET": CHAT, "POST": ADMIN},
    "agent-detail": {"GET": CHAT, "PATCH": ADMIN, "DELETE": ADMIN},
    # Keys, members, settings, usage.
    "api-keys": {"GET": ADMIN, "POST": ADMIN},
    "api-key-detail": {"GET": ADMIN, "DELETE": ADMIN},
    "members": {"GET": ADMIN, "POST": MEMBERS},
    "member-detail": {"GET": ADMIN, "PATCH": MEMBERS, "DELETE": MEMBERS},
    "automation-settings": {"GET": SESSIONS_READ, "PUT": ADMIN},
    "usage": {"GET": ADMIN},
    # Signing in and out.
    "auth-logout": {"POST": AUTHENTICATED},
    "auth-token": {ANY_METHOD: PUBLIC},
    "auth-token-refresh": {ANY_METHOD: PUBLIC},
    "auth-token-verify": {ANY_METHOD: PUBLIC},
    "auth-oidc-token": {ANY_METHOD: PUBLIC},
    # Operability.
    "openapi-schema": {ANY_METHOD: PUBLIC},
    "docs": {ANY_METHOD: PUBLIC},
    "healthz": {ANY_METHOD: PUBLIC},
    "readyz": {ANY_METHOD: PUBLIC},
}


def principal_permissions(principal: Principal) -> frozenset[str]:
    """An API key holds its scopes; a user the permissions of their role."""
    if principal.api_key is not None:
        return frozenset(principal.api_key.scopes or ()) & KEY_SCOPES
    return ROLE_PERMISSIONS.get(principal.role or "", frozenset())


def principal_can(principal: Principal, permission: str) -> bool:
    if permission == PUBLIC:
        return True
    if permission == AUTHENTICATED:
        return principal is not None
    return principal is not None and permission in principal_permissions(principal)


def grantable_scopes(principal: Principal) -> list[str]:
    """The scopes a key made by this principal may hold: never more than the principal may do."""
    held = principal_permissions(principal)
    return [scope for scope in ALL_SCOPES if scope in held]


def required_permission(url_name: str | None, method: str) -> str | None:
    """What the table asks of `method` on the endpoint, or None when it says nothing."""
    rules = ENDPOINT_PERMISSIONS.get(url_name or "")
    if rules is None:
        return None
    if ANY_METHOD in rules:
        return rules[ANY_METHOD]
    if method == "HEAD":
        method = "GET"
    if method == "OPTIONS":  # describes the endpoint, changes nothing
        return AUTHENTICATED
    return rules.get(method)


def needs_credentials(url_name: str | None, method: str) -> bool:
    """Whether the table asks `method` on the endpoint for credentials: such a request is
    authenticated before its body is read (config.asgi_handler)."""
    permission = required_permission(url_name, method)
    return permission is not None and permission != PUBLIC


def _url_name(request: Any) -> str | None:
    match = getattr(request, "resolver_match", None)
    return match.url_name if match is not None else None


def _refuse_unlisted(url_name: str | None, method: str) -> PermissionDenied:
    logger.error("No permission rule for %s on endpoint %r: refused.", method, url_name)
    return PermissionDenied("This endpoint is not open to any caller.", code="permission_denied")


def _denied(principal: Principal, permission: str) -> PermissionDenied:
    if principal.api_key is not None:
        who = "This API key does not have"
    else:
        who = f"Your role '{principal.role}' in organization '{principal.organization.slug}' does not include"
    return PermissionDenied(f"{who} the '{permission}' permission that this request needs.")


def check_permission(principal: Principal | None, permission: str) -> None:
    """Raise the API's 401 or 403 unless the principal holds the permission."""
    if permission == PUBLIC:
        return
    if principal is None or not getattr(principal, "is_authenticated", False):
        raise AuthenticationFailed("This endpoint needs credentials.", code="missing_api_key")
    if not principal_can(principal, permission):
        raise _denied(principal, permission)


def require_permission(request: HttpRequest, principal: Principal) -> None:
    """The check for views outside DRF: call it right after authenticating."""
    url_name = _url_name(request)
    permission = required_permission(url_name, request.method or "")
    if permission is None:
        raise _refuse_unlisted(url_name, request.method or "")
    check_permission(principal, permission)


class EndpointPermission(BasePermission):
    """The default permission class of every DRF view: the table's rule for the endpoint."""

    def has_permission(self, request: Any, view: APIView) -> bool:
        url_name = _url_name(request)
        method = request.method or ""
        permission = required_permission(url_name, method)
        if permission is None:
            if url_name in ENDPOINT_PERMISSIONS and not _implements(view, method):
                return True  # let the view answer 405
            raise _refuse_unlisted(url_name, method)
        check_permission(request.user, permission)
        return True


def _implements(view: APIView, method: str) -> bool:
    name = method.lower()
    return name in view.http_method_names and hasattr(view, name)
