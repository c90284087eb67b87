"""HTTP for API keys: GET and POST /v1/api-keys, GET and DELETE /v1/api-keys/{id} (revoke).
The full key is in the answer to POST and nowhere else, ever."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.http import JsonResponse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.api.shapes import ApiKeyListSerializer, ApiKeySerializer, IssuedApiKeySerializer
from accounts.models import ALL_SCOPES
from accounts.selectors import access_api_key, api_key_list
from accounts.services.keys import api_key_issue, api_key_revoke
from config.inputs import SERVER_SET_FIELDS, refuse_unknown_fields
from config.openapi.parts import KEY_ID, request_example
from sessions.api.fields import StrictCharField, StrictIntegerField, StrictListField

_DATABASE_INT_MAX = 2_147_483_647


def _limit() -> StrictIntegerField:
    return StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=_DATABASE_INT_MAX)


class ApiKeyInputSerializer(serializers.Serializer):
    name = StrictCharField(min_length=1, max_length=100)
    scopes = StrictListField(child=serializers.ChoiceField(choices=ALL_SCOPES), required=False, min_length=1)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    expires_in_days = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=3650)
    requests_per_minute = _limit()
    tokens_per_day = _limit()
    concurrent_turns = _limit()

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        refuse_unknown_fields(data, known=self.fields, server_set=SERVER_SET_FIELDS)
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        days = attrs.pop("expires_in_days", None)
        if days is not None:
            if attrs.get("expires_at") is not None:
                raise serializers.ValidationError(
                    {"expires_in_days": ["Give expires_at or expires_in_days, not both."]}
                )
            attrs["expires_at"] = timezone.now() + timedelta(days=days)
        expires_at = attrs.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise serializers.ValidationError({"expires_at": ["Must be in the future."]})
        return attrs


class ApiKeyListView(APIView):
    """GET /v1/api-keys (revoked and expired ones too), POST /v1/api-keys."""

    @extend_schema(
        operation_id="listApiKeys",
        summary="List API keys",
        tags=["API keys"],
        description="The organization's keys, revoked and expired ones too; never the keys themselves.",
        responses=ApiKeyListSerializer,
    )
    def get(self, request: Request) -> JsonResponse:
        keys = api_key_list(organization=request.user.organization)
        return JsonResponse(ApiKeyListSerializer({"data": keys}).data)

    @extend_schema(
        operation_id="createApiKey",
        summary="Create an API key",
        tags=["API keys"],
        description="The answer holds the whole key (`key`), once. A key never holds more than its "
        "creator may do; the owner and organization are set by the server, never by the body.",
        request=ApiKeyInputSerializer,
        responses={201: IssuedApiKeySerializer},
        examples=[
            request_example(
                "A chat key for 90 days", {"name": "ci", "scopes": ["chat"], "expires_in_days": 90}
            )
        ],
    )
    def post(self, request: Request) -> JsonResponse:
        serializer = ApiKeyInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = api_key_issue(principal=request.user, **serializer.validated_data)
        response = JsonResponse(IssuedApiKeySerializer(issued).data, status=201)
        response["Cache-Control"] = "no-store"  # the one answer that holds a secret
        return response


class ApiKeyDetailView(APIView):
    """GET /v1/api-keys/{id}; DELETE revokes it (at once: its next request is refused)."""

    @extend_schema(
        operation_id="retrieveApiKey",
        summary="Retrieve an API key",
        tags=["API keys"],
        parameters=[KEY_ID],
        responses=ApiKeySerializer,
    )
    def get(self, request: Request, key_id: str) -> JsonResponse:
        return JsonResponse(ApiKeySerializer(access_api_key(request.user, key_id)).data)

    @extend_schema(
        operation_id="revokeApiKey",
        summary="Revoke an API key",
        tags=["API keys"],
        parameters=[KEY_ID],
        responses={200: ApiKeySerializer},
    )
    def delete(self, request: Request, key_id: str) -> JsonResponse:
        api_key = api_key_revoke(api_key=access_api_key(request.user, key_id), actor=request.user)
        return JsonResponse(ApiKeySerializer(api_key).data)
