from __future__ import annotations

from typing import TYPE_CHECKING

from agents.models import Agent

if TYPE_CHECKING:
    from accounts.models import Organization


def agent_create_defaults(*, organization: Organization) -> Agent:
    """Every organization has the built-in echo agent from the moment it exists."""
    agent, _ = Agent.objects.get_or_create(
        organization=organization,
        slug="echo",
        defaults={"name": "Echo", "backend": Agent.Backend.ECHO},
    )
    return agent
