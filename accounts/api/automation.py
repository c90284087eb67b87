"""HTTP for the automation settings: GET and PUT /v1/settings/automation."""

from __future__ import annotations

from django.http import JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.api.shapes import AutomationSettingsSerializer
from accounts.automation import AutomationChanges, automation_get, automation_update
from agents.selectors import access_agent_named_in_body
from config.openapi.parts import request_example
from sessions.api.fields import StrictBooleanField, StrictCharField, StrictIntegerField
from sessions.api.session_serializers import ClosedSerializer

_DATABASE_INT_MAX = 2_147_483_647


def _positive_or_null() -> StrictIntegerField:
    return StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=_DATABASE_INT_MAX)


class AutomationSettingsInputSerializer(ClosedSerializer):
    """A PUT body: any of the settings, with JSON's own types; a setting left out is kept.
    Unknown names are refused; the GET answer's `object` may be sent back."""

    ignored_fields = frozenset({"object"})

    auto_create_sessions = StrictBooleanField(required=False)
    session_idle_ttl = _positive_or_null()
    history_max_messages = _positive_or_null()
    history_max_tokens = _positive_or_null()
    auto_title = StrictBooleanField(required=False)
    default_agent = StrictCharField(required=False, allow_null=True, max_length=64)


class AutomationSettingsView(APIView):
    """GET /v1/settings/automation: the caller's organization's settings. PUT: change the
    settings the body names (unknown names are refused); the answer is the whole set."""

    @extend_schema(
        operation_id="retrieveAutomationSettings",
        summary="Retrieve the automation settings",
        tags=["Settings"],
        responses=AutomationSettingsSerializer,
    )
    def get(self, request: Request) -> JsonResponse:
        return JsonResponse(
            AutomationSettingsSerializer(automation_get(organization=request.user.organization)).data
        )

    @extend_schema(
        operation_id="updateAutomationSettings",
        summary="Change the automation settings",
        tags=["Settings"],
        request=AutomationSettingsInputSerializer,
        responses=AutomationSettingsSerializer,
        examples=[request_example("Echo answers requests without a model", {"default_agent": "echo"})],
    )
    def put(self, request: Request) -> JsonResponse:
        organization = request.user.organization
        serializer = AutomationSettingsInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        changes: AutomationChanges = dict(serializer.validated_data)  # type: ignore[assignment]
        if changes.get("default_agent") is not None:
            changes["default_agent"] = access_agent_named_in_body(
                request.user, changes["default_agent"], field="default_agent"
            )
        settings = automation_update(
            organization=organization,
            changes=changes,
            actor_api_key=request.user.api_key,
            actor_user=request.user.user,
        )
        return JsonResponse(AutomationSettingsSerializer(settings).data)
