"""Signing in for the API: JWT pairs for users.

- POST /v1/auth/token         {username, password} -> {access, refresh}
- POST /v1/auth/token/refresh {refresh}            -> {access, refresh} (the old refresh is used up)
- POST /v1/auth/token/verify  {token}              -> {} or 401
- POST /v1/auth/logout        {refresh}            -> 204; needs the user's bearer token
- POST /v1/auth/oidc/token                         -> {access, refresh} for the browser session

The last one is how a user who signed in through an identity provider (allauth, in the browser)
gets tokens for the API: it takes the Django session cookie and, like every session-authenticated
write, the CSRF token (X-CSRFToken header or a form's csrfmiddlewaretoken field), so another site
cannot mint tokens with the cookie. The browser page /accounts/api-token/ (accounts/views.py)
issues a pair from its own form.

These views reach the database from their request's own thread: while it cannot be reached they
answer 503 database_unavailable with Retry-After, at once once the outage is known, as the rest
of the API does (config.db.DatabaseGuardedAPIView).
"""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.contrib.auth.models import update_last_login
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.parsers import FormParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_simplejwt.settings import api_settings

from accounts.api.shapes import TokenPairSerializer
from accounts.jwt import TokenPair, jwt_pair_issue, jwt_pair_refresh, jwt_refresh_revoke, jwt_verify
from accounts.signin_throttle import signin_attempt_check, signin_failure_record
from config.db import DatabaseGuardedAPIView
from config.errors import AuthenticationFailed, PermissionDenied
from config.inputs import JsonBodyParser
from config.openapi.parts import request_example


# Nothing is trimmed: "" is refused and " " is just wrong credentials, as the schema says.
class CredentialsInput(serializers.Serializer):
    username = serializers.CharField(max_length=150, trim_whitespace=False)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class RefreshInput(serializers.Serializer):
    refresh = serializers.CharField(max_length=4096, trim_whitespace=False)


class TokenInput(serializers.Serializer):
    token = serializers.CharField(max_length=4096, trim_whitespace=False)


def _pair_response(pair: TokenPair) -> Response:
    response = Response(TokenPairSerializer(pair).data)
    # Tokens are credentials: no cache may keep them (RFC 6749, 5.1).
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


def _valid(serializer_class: type[serializers.Serializer], request: Request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class TokenObtainView(DatabaseGuardedAPIView):
    authentication_classes = []

    @extend_schema(
        operation_id="createToken",
        summary="Sign in: a JWT pair",
        tags=["Authentication"],
        description="A JWT access and refresh token for a username and password. The access token "
        "works as `Authorization: Bearer …` on every endpoint, acting in the organization the "
        "`X-Organization` header names, else the user's default one.",
        request=CredentialsInput,
        responses=TokenPairSerializer,
        examples=[request_example("A password", {"username": "alice", "password": "correct horse battery"})],
    )
    def post(self, request: Request) -> Response:
        data = _valid(CredentialsInput, request)
        attempt = {"username": data["username"], "client_address": request.META.get("REMOTE_ADDR", "")}
        signin_attempt_check(**attempt)
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None or not user.is_active:
            signin_failure_record(**attempt)
            raise AuthenticationFailed("Incorrect username or password.", code="invalid_credentials")
        if api_settings.UPDATE_LAST_LOGIN:
            update_last_login(None, user)
        return _pair_response(jwt_pair_issue(user=user))


class TokenRefreshView(DatabaseGuardedAPIView):
    authentication_classes = []

    @extend_schema(
        operation_id="refreshToken",
        summary="Refresh a JWT pair",
        tags=["Authentication"],
        description="A new pair for a refresh token; the refresh token is used up (rotation).",
        request=RefreshInput,
        responses=TokenPairSerializer,
    )
    def post(self, request: Request) -> Response:
        data = _valid(RefreshInput, request)
        return _pair_response(jwt_pair_refresh(raw_refresh=data["refresh"]))


class TokenVerifyView(DatabaseGuardedAPIView):
    authentication_classes = []

    @extend_schema(
        operation_id="verifyToken",
        summary="Verify a JWT",
        tags=["Authentication"],
        request=TokenInput,
        responses={200: {"type": "object", "description": "An empty object: the token is valid."}},
    )
    def post(self, request: Request) -> Response:
        data = _valid(TokenInput, request)
        jwt_verify(raw_token=data["token"])
        return Response({})


class LogoutView(DatabaseGuardedAPIView):
    @extend_schema(
        operation_id="logout",
        summary="Sign out",
        tags=["Authentication"],
        description="Revoke the refresh token; needs the user's access token (not an API key).",
        request=RefreshInput,
        responses={204: OpenApiResponse(description="Logged out: the refresh token is revoked.")},
    )
    def post(self, request: Request) -> Response:
        data = _valid(RefreshInput, request)
        principal = request.user
        if principal.user is None:
            raise PermissionDenied("Log out with the user's access token, not an API key.")
        jwt_refresh_revoke(raw_refresh=data["refresh"], user=principal.user)
        return Response(status=204)


class SessionTokenView(DatabaseGuardedAPIView):
    """A JWT pair for the user of the browser session (after an OAuth/OIDC sign-in)."""

    # DRF's session authentication enforces Django's CSRF check on every request it accepts; the
    # token comes in the X-CSRFToken header or, from an HTML form, its csrfmiddlewaretoken field.
    authentication_classes = [SessionAuthentication]
    parser_classes = [JsonBodyParser, FormParser]

    @extend_schema(
        operation_id="createTokenFromSession",
        summary="A JWT pair after a browser sign-in",
        tags=["Authentication"],
        description="For a user signed in in the browser (password or identity provider, "
        "/accounts/login/): takes the session cookie and the CSRF token (`X-CSRFToken` header).",
        request=None,
        responses=TokenPairSerializer,
    )
    def post(self, request: Request) -> Response:
        user = request.user
        if user is None or not user.is_authenticated or not user.is_active:
            raise AuthenticationFailed(
                "Sign in in the browser first (/accounts/login/); this endpoint takes the session "
                "cookie and the CSRF token.",
                code="not_signed_in",
            )
        return _pair_response(jwt_pair_issue(user=user))
