"""HTTP for agents: parse, call one service, shape the answer."""

from __future__ import annotations

from django.http import JsonResponse
from rest_framework.request import Request
from rest_framework.views import APIView

from agents.api.responses import agent_payload
from agents.api.serializers import AgentInputSerializer
from agents.selectors import access_agent, agent_list
from agents.services import agent_create, agent_delete, agent_update


class AgentListView(APIView):
    """GET /v1/agents (enabled and disabled), POST /v1/agents. Who may call which is in
    accounts/permissions.py, as for every endpoint."""

    def get(self, request: Request) -> JsonResponse:
        agents = agent_list(organization=request.user.organization)
        return JsonResponse({"object": "list", "data": [agent_payload(agent) for agent in agents]})

    def post(self, request: Request) -> JsonResponse:
        serializer = AgentInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        agent = agent_create(organization=request.user.organization, **serializer.validated_data)
        return JsonResponse(agent_payload(agent), status=201)


class AgentDetailView(APIView):
    """GET, PATCH (partial update) and DELETE /v1/agents/{slug}."""

    def get(self, request: Request, slug: str) -> JsonResponse:
        return JsonResponse(agent_payload(access_agent(request.user, slug)))

    def patch(self, request: Request, slug: str) -> JsonResponse:
        agent = access_agent(request.user, slug)
        serializer = AgentInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        agent = agent_update(agent=agent, changes=serializer.validated_data)
        return JsonResponse(agent_payload(agent))

    def delete(self, request: Request, slug: str) -> JsonResponse:
        agent_delete(agent=access_agent(request.user, slug))
        return JsonResponse({"id": slug, "object": "agent.deleted", "deleted": True})
