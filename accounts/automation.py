"""An organization's automation settings: how its sessions behave (GET/PUT /v1/settings/automation)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

from django.db import transaction

from accounts.models import AuditEvent, AutomationSettings, Organization

if TYPE_CHECKING:
    from accounts.models import ApiKey, User
    from agents.models import Agent


class AutomationChanges(TypedDict, total=False):
    """What a PUT may change; a key left out is left as it is."""

    auto_create_sessions: bool
    session_idle_ttl: int | None
    history_max_messages: int | None
    history_max_tokens: int | None
    auto_title: bool
    default_agent: Agent | None


def automation_get(*, organization: Organization) -> AutomationSettings:
    """The organization's settings. Every organization gets them when it is created; one made
    some other way (a fixture, a raw insert) gets the defaults on first read. Settings that
    came with the organization (select_related("organization__automation"), as authentication
    and the runner's claim load them) cost no query: they were read with the request or the turn."""
    if Organization.automation.is_cached(organization):
        return organization.automation
    settings, _ = AutomationSettings.objects.select_related("default_agent").get_or_create(
        organization=organization
    )
    return settings


def automation_update(
    *,
    organization: Organization,
    changes: AutomationChanges,
    actor_api_key: ApiKey | None = None,
    actor_user: User | None = None,
) -> AutomationSettings:
    """Apply `changes` and record who made them. `default_agent` must be an agent of this
    organization: the caller resolves the slug within the organization (a foreign agent looks
    missing there)."""
    if "default_agent" in changes:
        agent = changes["default_agent"]
        if agent is not None and agent.organization_id != organization.pk:
            raise ValueError("default_agent belongs to another organization")
    if not changes:
        return automation_get(organization=organization)
    with transaction.atomic():
        settings = automation_get(organization=organization)
        # No select_related here: PostgreSQL locks no row of a nullable outer join.
        settings = AutomationSettings.objects.select_for_update().get(pk=settings.pk)
        for name, value in changes.items():
            setattr(settings, name, value)
        settings.save()
        AuditEvent.objects.create(
            organization=organization,
            actor_user=actor_user,
            actor_api_key=actor_api_key,
            action="automation_settings.updated",
            target="automation",
            data=_audit_data(changes),
        )
    return settings


def _audit_data(changes: AutomationChanges) -> dict[str, Any]:
    data: dict[str, Any] = dict(changes)
    if "default_agent" in data:
        agent = data["default_agent"]
        data["default_agent"] = agent.slug if agent is not None else None
    return data
