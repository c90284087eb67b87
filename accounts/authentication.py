"""Bearer authentication for the API. One path: the DRF views use the class, the async chat
view calls `authenticate_bearer` directly. JWT joins here with the accounts issue."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest
from rest_framework.authentication import BaseAuthentication

from accounts.models import ApiKey, Organization, User
from accounts.services import api_key_authenticate
from config.errors import AuthenticationFailed


@dataclass(frozen=True)
class Principal:
    """Who is calling and on behalf of which organization: an API key (with its scopes) or a
    user signed in with a JWT (with their role in the organization)."""

    organization: Organization
    api_key: ApiKey | None = None
    user: User | None = None
    role: str | None = None  # the user's membership role; None for an API key

    # DRF asks request.user this.
    is_authenticated = True


def authenticate_bearer(request: HttpRequest) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise AuthenticationFailed(
            "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
            code="missing_api_key",
        )
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("The Authorization header must be 'Bearer YOUR_KEY'.")
    api_key = api_key_authenticate(raw_key=token.strip())
    if api_key is None:
        raise AuthenticationFailed("Incorrect, revoked or expired API key provided.")
    return Principal(organization=api_key.organization, api_key=api_key)


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: HttpRequest) -> tuple[Principal, ApiKey | None]:
        principal = authenticate_bearer(request)
        return principal, principal.api_key

    def authenticate_header(self, request: HttpRequest) -> str:
        return "Bearer"
