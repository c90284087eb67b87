"""Bearer authentication for the API. One path for every endpoint: the DRF views use
`ApiKeyAuthentication`, the async views call `authenticate_bearer` directly. A bearer is either
an API key (`sk-parley-…`, bound to one organization) or a user's JWT access token, which acts in
the organization that the `X-Organization` header names, else the user's default one, else their
only one."""

from __future__ import annotations

from django.http import HttpRequest
from rest_framework.authentication import BaseAuthentication

from accounts.jwt import jwt_authenticate, looks_like_jwt
from accounts.models import ApiKey, Membership, User
from accounts.principal import Principal
from accounts.services.keys import api_key_authenticate
from config.errors import AuthenticationFailed, PermissionDenied

ORGANIZATION_HEADER = "X-Organization"
# Where the ASGI handler (config.asgi_handler) keeps the principal it authenticated before reading
# the request's body, so that the view does not authenticate the same request again.
PRINCIPAL_SCOPE_KEY = "parley.principal"


def _authenticated_early(request: HttpRequest) -> Principal | None:
    scope = getattr(request, "scope", None)
    if isinstance(scope, dict) and isinstance(scope.get(PRINCIPAL_SCOPE_KEY), Principal):
        return scope[PRINCIPAL_SCOPE_KEY]
    return None


async def bearer_principal(request: HttpRequest) -> Principal:
    """`authenticate_bearer` for the async views: the principal the ASGI handler found before the
    body came is taken as it is, without another trip to a database thread."""
    # Imported here: config.db imports DRF's views, whose settings import this module.
    from config.db import db_call

    return _authenticated_early(request) or await db_call(authenticate_bearer, request)


def authenticate_bearer(request: HttpRequest) -> Principal:
    """Who the request's bearer is; it reads only the headers. AuthenticationFailed (401) or
    PermissionDenied (403, for an organization the user is not in) otherwise."""
    early = _authenticated_early(request)
    if early is not None:
        return early
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if not header:
        raise AuthenticationFailed(
            "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
            code="missing_api_key",
        )
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationFailed("The Authorization header must be 'Bearer YOUR_KEY'.")
    if looks_like_jwt(token):
        user = jwt_authenticate(raw_token=token)
        membership = _membership_to_act_in(user, request.headers.get(ORGANIZATION_HEADER, "").strip())
        return Principal(organization=membership.organization, user=user, role=membership.role)
    api_key = api_key_authenticate(raw_key=token)
    if api_key is None:
        raise AuthenticationFailed("Incorrect, revoked or expired API key provided.")
    # An API key belongs to one organization: X-Organization has nothing to choose.
    return Principal(organization=api_key.organization, api_key=api_key)


def _membership_to_act_in(user: User, organization_slug: str) -> Membership:
    memberships = Membership.objects.select_related("organization").filter(user=user)
    if organization_slug:
        membership = memberships.filter(organization__slug=organization_slug).first()
        if membership is None:
            # An organization the user is not in and one that doesn't exist look the same.
            raise PermissionDenied(
                f"You are not a member of the organization named in the {ORGANIZATION_HEADER} header.",
                param=ORGANIZATION_HEADER,
            )
        return membership
    if user.default_organization_id is not None:
        membership = memberships.filter(organization_id=user.default_organization_id).first()
        if membership is not None:
            return membership
    candidates = list(memberships.order_by("id")[:2])
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise PermissionDenied("You are not a member of any organization.")
    raise PermissionDenied(
        f"You belong to several organizations and have no default one: name one in the "
        f"{ORGANIZATION_HEADER} header.",
        param=ORGANIZATION_HEADER,
    )


class ApiKeyAuthentication(BaseAuthentication):
    """DRF's side of `authenticate_bearer`: API keys and JWT access tokens alike."""

    def authenticate(self, request: HttpRequest) -> tuple[Principal, ApiKey | None]:
        principal = authenticate_bearer(request)
        return principal, principal.api_key

    def authenticate_header(self, request: HttpRequest) -> str:
        return "Bearer"
