"""GET /v1/models: the organization's enabled agents, in OpenAI's list format."""

from __future__ import annotations

from django.http import JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from agents.api.shapes import ModelListSerializer, ModelSerializer
from agents.selectors import access_model, agent_list_enabled
from config.openapi.parts import SLUG


class ModelListView(APIView):
    @extend_schema(
        operation_id="listModels", summary="List models", tags=["Models"], responses=ModelListSerializer
    )
    def get(self, request: Request) -> JsonResponse:
        agents = agent_list_enabled(organization=request.user.organization).select_related("organization")
        return JsonResponse(ModelListSerializer({"data": agents}).data)


class ModelDetailView(APIView):
    @extend_schema(
        operation_id="retrieveModel",
        summary="Retrieve a model",
        tags=["Models"],
        parameters=[SLUG],
        responses=ModelSerializer,
        description="An enabled agent of the organization, as OpenAI's model object.",
    )
    def get(self, request: Request, slug: str) -> JsonResponse:
        return JsonResponse(ModelSerializer(access_model(request.user, slug)).data)
