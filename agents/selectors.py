from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet

from agents.models import Agent

if TYPE_CHECKING:
    from accounts.models import Organization


def agent_list_enabled(*, organization: Organization) -> QuerySet[Agent]:
    return Agent.objects.filter(organization=organization, enabled=True).order_by("slug")


def agent_get_enabled(*, organization: Organization, slug: str) -> Agent | None:
    return agent_list_enabled(organization=organization).filter(slug=slug).first()


def agent_list(*, organization: Organization) -> QuerySet[Agent]:
    """Every agent of the organization, enabled or not."""
    return Agent.objects.filter(organization=organization).order_by("slug")


def agent_get(*, organization: Organization, slug: str) -> Agent | None:
    return agent_list(organization=organization).filter(slug=slug).first()
