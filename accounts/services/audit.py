"""The audit trail: who did what to a tenant's keys and members."""

from __future__ import annotations

from typing import Any

from accounts.models import AuditEvent
from accounts.principal import Principal


def audit_record(
    *, organization_id: int, actor: Principal | None, action: str, target: str, data: dict[str, Any]
) -> AuditEvent:
    """Record who did what. Callers pass only public facts: never a key's secret or hash."""
    return AuditEvent.objects.create(
        organization_id=organization_id,
        actor_user=actor.user if actor is not None else None,
        actor_api_key=actor.api_key if actor is not None else None,
        action=action,
        target=target,
        data=data,
    )
