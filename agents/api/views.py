"""HTTP for agents: parse, call one service, shape the answer."""

from __future__ import annotations

from django.http import JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from agents.api.serializers import AgentInputSerializer
from agents.api.shapes import AgentDeletedSerializer, AgentListSerializer, AgentSerializer
from agents.selectors import access_agent, agent_list
from agents.services import agent_create, agent_delete, agent_update
from config.openapi.parts import SLUG, error, request_example


class AgentListView(APIView):
    """GET /v1/agents (enabled and disabled), POST /v1/agents. Who may call which is in
    accounts/permissions.py, as for every endpoint."""

    @extend_schema(
        operation_id="listAgents", summary="List agents", tags=["Agents"], responses=AgentListSerializer
    )
    def get(self, request: Request) -> JsonResponse:
        agents = agent_list(organization=request.user.organization)
        return JsonResponse(AgentListSerializer({"data": agents}).data)

    @extend_schema(
        operation_id="createAgent",
        summary="Create an agent",
        tags=["Agents"],
        request=AgentInputSerializer,
        responses={201: AgentSerializer, 409: error("An agent with this slug already exists.")},
        examples=[
            request_example(
                "An echo agent",
                {"slug": "support", "name": "Support", "backend": "echo", "system_prompt": "Be brief."},
            )
        ],
    )
    def post(self, request: Request) -> JsonResponse:
        serializer = AgentInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        agent = agent_create(organization=request.user.organization, **serializer.validated_data)
        return JsonResponse(AgentSerializer(agent).data, status=201)


class AgentDetailView(APIView):
    """GET, PATCH (partial update) and DELETE /v1/agents/{slug}."""

    @extend_schema(
        operation_id="retrieveAgent",
        summary="Retrieve an agent",
        tags=["Agents"],
        parameters=[SLUG],
        responses=AgentSerializer,
    )
    def get(self, request: Request, slug: str) -> JsonResponse:
        return JsonResponse(AgentSerializer(access_agent(request.user, slug)).data)

    @extend_schema(
        operation_id="updateAgent",
        summary="Update an agent",
        tags=["Agents"],
        parameters=[SLUG],
        request=AgentInputSerializer,
        responses={
            200: AgentSerializer,
            409: error("Another agent has this slug, or a concurrent update changed the agent."),
        },
        examples=[request_example("A new system prompt", {"system_prompt": "Be thorough."})],
    )
    def patch(self, request: Request, slug: str) -> JsonResponse:
        agent = access_agent(request.user, slug)
        serializer = AgentInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        agent = agent_update(agent=agent, changes=serializer.validated_data)
        return JsonResponse(AgentSerializer(agent).data)

    @extend_schema(
        operation_id="deleteAgent",
        summary="Delete an agent",
        tags=["Agents"],
        parameters=[SLUG],
        responses={200: AgentDeletedSerializer},
    )
    def delete(self, request: Request, slug: str) -> JsonResponse:
        agent_delete(agent=access_agent(request.user, slug))
        return JsonResponse(AgentDeletedSerializer({"id": slug}).data)
