"""HTTP for API keys: GET and POST /v1/api-keys, GET and DELETE /v1/api-keys/{id} (revoke).
The full key is in the answer to POST and nowhere else, ever."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.http import JsonResponse
from django.utils import timezone
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.models import ALL_SCOPES, ApiKey
from accounts.selectors import access_api_key, api_key_list
from accounts.services.keys import IssuedApiKey, api_key_issue, api_key_revoke
from config.inputs import SERVER_SET_FIELDS, refuse_unknown_fields
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


def _stamp(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment else None


def api_key_payload(api_key: ApiKey) -> dict[str, Any]:
    """A key as the API shows it: how to recognise it, never what it is."""
    creator = api_key.created_by
    return {
        "id": api_key.pk,
        "object": "api_key",
        "name": api_key.name,
        "prefix": api_key.prefix,
        "last_four": api_key.last_four,
        "redacted_value": f"{api_key.prefix}…{api_key.last_four}",
        "scopes": list(api_key.scopes),
        "created": _stamp(api_key.created),
        "last_used_at": _stamp(api_key.last_used_at),
        "expires_at": _stamp(api_key.expires_at),
        "revoked_at": _stamp(api_key.revoked_at),
        "created_by": {"id": creator.pk, "username": creator.username} if creator else None,
        "limits": {
            "requests_per_minute": api_key.requests_per_minute,
            "tokens_per_day": api_key.tokens_per_day,
            "concurrent_turns": api_key.concurrent_turns,
        },
    }


def issued_payload(issued: IssuedApiKey) -> dict[str, Any]:
    return {**api_key_payload(issued.api_key), "key": issued.secret}


class ApiKeyListView(APIView):
    """GET /v1/api-keys (revoked and expired ones too), POST /v1/api-keys."""

    def get(self, request: Request) -> JsonResponse:
        keys = api_key_list(organization=request.user.organization)
        return JsonResponse({"object": "list", "data": [api_key_payload(api_key) for api_key in keys]})

    def post(self, request: Request) -> JsonResponse:
        serializer = ApiKeyInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = api_key_issue(principal=request.user, **serializer.validated_data)
        response = JsonResponse(issued_payload(issued), status=201)
        response["Cache-Control"] = "no-store"  # the one answer that holds a secret
        return response


class ApiKeyDetailView(APIView):
    """GET /v1/api-keys/{id}; DELETE revokes it (at once: its next request is refused)."""

    def get(self, request: Request, key_id: str) -> JsonResponse:
        return JsonResponse(api_key_payload(access_api_key(request.user, key_id)))

    def delete(self, request: Request, key_id: str) -> JsonResponse:
        api_key = api_key_revoke(api_key=access_api_key(request.user, key_id), actor=request.user)
        return JsonResponse(api_key_payload(api_key))
