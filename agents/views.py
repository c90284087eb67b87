"""GET /v1/models: the organization's enabled agents, in OpenAI's list format."""

from __future__ import annotations

from django.http import JsonResponse
from rest_framework.request import Request
from rest_framework.views import APIView

from agents.models import Agent
from agents.selectors import access_model, agent_list_enabled


def model_payload(agent: Agent) -> dict:
    return {
        "id": agent.slug,
        "object": "model",
        "created": int(agent.created.timestamp()),
        "owned_by": agent.organization.slug,
    }


class ModelListView(APIView):
    def get(self, request: Request) -> JsonResponse:
        agents = agent_list_enabled(organization=request.user.organization).select_related("organization")
        return JsonResponse({"object": "list", "data": [model_payload(agent) for agent in agents]})


class ModelDetailView(APIView):
    def get(self, request: Request, slug: str) -> JsonResponse:
        return JsonResponse(model_payload(access_model(request.user, slug)))
