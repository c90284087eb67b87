"""Reads of agents. Every read takes the organization: another organization's agent looks missing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet

from agents.models import Agent
from config.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
    from accounts.models import Organization
    from accounts.principal import Principal


def agent_list_enabled(*, organization: Organization) -> QuerySet[Agent]:
    return Agent.objects.filter(organization=organization, enabled=True).order_by("slug")


def agent_get_enabled(*, organization: Organization, slug: str) -> Agent | None:
    return agent_list_enabled(organization=organization).filter(slug=slug).first()


def agent_list(*, organization: Organization) -> QuerySet[Agent]:
    """Every agent of the organization, enabled or not."""
    return Agent.objects.filter(organization=organization).order_by("slug")


def agent_get(*, organization: Organization, slug: str) -> Agent | None:
    return agent_list(organization=organization).filter(slug=slug).first()


def agent_not_found(slug: str) -> NotFound:
    """What a missing agent, and another organization's, looks like."""
    return NotFound(f"No agent found with slug '{slug}'.", param="slug", code="agent_not_found")


def access_agent(principal: Principal, slug: str) -> Agent:
    """The agent of the principal's organization with this slug, enabled or not, or agent_not_found (404)."""
    agent = agent_get(organization=principal.organization, slug=slug)
    if agent is None:
        raise agent_not_found(slug)
    return agent


def access_agent_named_in_body(principal: Principal, slug: str, *, field: str) -> Agent:
    """The agent a request's body names in `field`: a 400 agent_not_found naming the field when
    the organization has none by that slug (the body is wrong, not the URL)."""
    agent = agent_get(organization=principal.organization, slug=slug)
    if agent is None:
        raise InvalidRequest(f"No agent found with slug '{slug}'.", param=field, code="agent_not_found")
    return agent


def access_model(principal: Principal, slug: str) -> Agent:
    """The enabled agent with this slug, as GET /v1/models/{id} names it, or OpenAI's 404 model_not_found."""
    agent = agent_get_enabled(organization=principal.organization, slug=slug)
    if agent is None:
        raise NotFound(
            f"The model '{slug}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    return agent
