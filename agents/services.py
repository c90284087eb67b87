from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

from django.db import IntegrityError, transaction
from rest_framework import serializers

from agents.backends import BACKENDS, backend_for
from agents.backends.base import AgentBackend
from agents.models import Agent
from agents.selectors import agent_not_found
from agents.tools import validate_tools_config
from config.errors import Conflict

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


class AgentChanges(TypedDict, total=False):
    """What an update may change; a key left out is left as it is."""

    slug: str
    name: str
    backend: str
    backend_config: dict[str, Any]
    system_prompt: str
    default_params: dict[str, Any]
    tools: list[dict[str, Any]]
    max_tool_steps: int
    history_max_messages: int | None
    history_max_tokens: int | None
    enabled: bool


def agent_create(
    *,
    organization: Organization,
    slug: str,
    backend: str,
    name: str | None = None,
    backend_config: dict[str, Any] | None = None,
    system_prompt: str = "",
    default_params: dict[str, Any] | None = None,
    tools: list[dict[str, Any]] | None = None,
    max_tool_steps: int = 5,
    history_max_messages: int | None = None,
    history_max_tokens: int | None = None,
    enabled: bool = True,
) -> Agent:
    """A new agent of the organization. The backend configuration and the tools are validated
    (secrets sealed) by the backend and the tools; a DRF ValidationError names the field, a
    Conflict says the slug is taken. Arguments are of their JSON types already (the API's
    serializers see to that)."""
    agent = Agent(
        organization=organization,
        slug=slug,
        name=name or slug,
        backend=backend,
        backend_config=_validated_backend_config(
            _backend(backend), backend_config if backend_config is not None else {}, previous={}
        ),
        system_prompt=system_prompt,
        default_params=default_params or {},
        tools=_validated_tools(tools or [], previous=[]),
        max_tool_steps=max_tool_steps,
        history_max_messages=history_max_messages,
        history_max_tokens=history_max_tokens,
        enabled=enabled,
    )
    _save_unique(agent, force_insert=True)
    return agent


def agent_update(*, agent: Agent, changes: AgentChanges) -> Agent:
    """Apply a partial update to `agent` (as loaded at the start of the request). A new backend
    configuration is validated against the stored one, so that a secret it leaves out is kept;
    a new backend starts its configuration from scratch (from `{}` when the update carries
    none). Validation may resolve host names (the egress check), so it runs before the row is
    locked; the write then checks that what it validated against is still what is stored, and
    is a Conflict otherwise (two updates must not each keep a secret the other replaced)."""
    values = _validated_changes(agent, changes)
    if not values:
        return agent
    with transaction.atomic():
        current = Agent.objects.select_for_update().filter(pk=agent.pk).first()
        if current is None:
            raise agent_not_found(agent.slug)
        if _validation_basis(current) != _validation_basis(agent):
            raise Conflict(
                "The agent was changed by another request while this update was checked; send it again.",
                param="slug",
                code="agent_changed",
            )
        for field, value in values.items():
            setattr(current, field, value)
        _save_unique(current, update_fields=[*values, "updated"])
    return current


def _validated_changes(agent: Agent, changes: AgentChanges) -> dict[str, Any]:
    values: dict[str, Any] = {
        field: changes[field]
        for field in (
            "slug",
            "name",
            "system_prompt",
            "default_params",
            "max_tool_steps",
            "history_max_messages",
            "history_max_tokens",
            "enabled",
        )
        if field in changes
    }
    backend_name = changes.get("backend", agent.backend)
    if backend_name != agent.backend:
        values["backend"] = backend_name
        values["backend_config"] = _validated_backend_config(
            _backend(backend_name), changes.get("backend_config", {}), previous={}
        )
    elif "backend_config" in changes:
        values["backend_config"] = _validated_backend_config(
            _backend(backend_name), changes["backend_config"], previous=agent.backend_config
        )
    if "tools" in changes:
        values["tools"] = _validated_tools(changes["tools"], previous=agent.tools)
    return values


def agent_validate_settings(
    *, agent: Agent | None, backend: str, backend_config: Any, tools: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A backend configuration and tools as they would be stored (secrets sealed, a secret left
    out kept from `agent`), or a ValidationError keyed `backend_config`/`tools`. For forms that
    save whole agents, such as the admin's."""
    same_backend = agent is not None and agent.backend == backend
    config = _validated_backend_config(
        _backend(backend), backend_config, previous=agent.backend_config if same_backend else {}
    )
    return config, _validated_tools(tools, previous=agent.tools if agent else [])


def _validation_basis(agent: Agent) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    return agent.backend, agent.backend_config, agent.tools


def agent_delete(*, agent: Agent) -> None:
    """Delete the agent. Its sessions and turns stay (their agent becomes null); a turn of it
    still running ends with an `agent_deleted` error."""
    agent.delete()


def _backend(name: str) -> AgentBackend:
    try:
        return backend_for(name)
    except LookupError:
        raise serializers.ValidationError(
            {"backend": [f"Unknown backend; expected one of {', '.join(BACKENDS)}."]}
        ) from None


def _validated_backend_config(
    backend: AgentBackend, config: dict[str, Any], *, previous: dict[str, Any]
) -> dict[str, Any]:
    try:
        return backend.validate_config(config, previous=previous)
    except serializers.ValidationError as exc:
        raise serializers.ValidationError({"backend_config": exc.detail}) from None


def _validated_tools(
    entries: list[dict[str, Any]], *, previous: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    try:
        return validate_tools_config(entries, previous=previous)
    except serializers.ValidationError as exc:
        raise serializers.ValidationError({"tools": exc.detail}) from None


def _save_unique(agent: Agent, *, force_insert: bool = False, update_fields: list[str] | None = None) -> None:
    try:
        with transaction.atomic():
            agent.save(force_insert=force_insert, update_fields=update_fields)
    except IntegrityError:
        if (
            not Agent.objects.filter(organization_id=agent.organization_id, slug=agent.slug)
            .exclude(pk=agent.pk)
            .exists()
        ):
            raise
        raise Conflict(
            f"An agent with slug '{agent.slug}' already exists.", param="slug", code="agent_exists"
        ) from None
