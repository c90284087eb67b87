"""Writes for API keys: minting, authenticating and revoking them, and keeping a key within what
its maker may do (at its making, and later when the maker's role changes)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import ALL_SCOPES, ApiKey, Membership, Organization, User
from accounts.permissions import ROLE_PERMISSIONS, grantable_scopes
from accounts.principal import Principal
from accounts.services.audit import audit_record
from config.errors import InvalidRequest, PermissionDenied

# Secret scanners look for this; it also tells a Parley key from an upstream provider's.
API_KEY_MARKER = "sk-parley-"
_ALPHABET = string.ascii_letters + string.digits
_LOOKUP_LENGTH = 12
_SECRET_LENGTH = 40
# Don't write last_used_at on every request: once a minute per key is plenty.
_LAST_USED_RESOLUTION_SECONDS = 60


@dataclass(frozen=True)
class IssuedApiKey:
    api_key: ApiKey
    secret: str  # the only time the full key exists outside the caller's hands


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _digest(raw_key: str) -> str:
    # Keys carry 238 bits of randomness, so a fast hash is safe here (as GitHub does for tokens).
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_create(
    *,
    organization: Organization,
    name: str,
    created_by: User | None = None,
    expires_at: datetime | None = None,
    scopes: list[str] | None = None,
    requests_per_minute: int | None = None,
    tokens_per_day: int | None = None,
    concurrent_turns: int | None = None,
) -> IssuedApiKey:
    """Mint a key as told, with no check of who asks: for the operator's commands and for
    `api_key_issue`, which holds the rules for everyone else."""
    prefix = API_KEY_MARKER + _random(_LOOKUP_LENGTH)
    raw_key = prefix + _random(_SECRET_LENGTH)
    api_key = ApiKey.objects.create(
        organization=organization,
        name=name,
        prefix=prefix,
        secret_hash=_digest(raw_key),
        last_four=raw_key[-4:],
        created_by=created_by,
        expires_at=expires_at,
        scopes=list(ALL_SCOPES) if scopes is None else list(scopes),
        requests_per_minute=requests_per_minute,
        tokens_per_day=tokens_per_day,
        concurrent_turns=concurrent_turns,
    )
    return IssuedApiKey(api_key=api_key, secret=raw_key)


def api_key_replace(*, organization: Organization, name: str, created_by: User | None = None) -> IssuedApiKey:
    """A new key named `name` with every scope, and the organization's earlier live keys of that
    name revoked: for a key that a command mints on every run (the demo key), so that running
    it again never leaves more than one of them valid."""
    with transaction.atomic():
        for earlier in ApiKey.objects.filter(organization=organization, name=name, revoked_at__isnull=True):
            api_key_revoke(api_key=earlier)
        return api_key_create(organization=organization, name=name, created_by=created_by)


def api_key_revoke(*, api_key: ApiKey, actor: Principal | None = None) -> ApiKey:
    """Revoke the key from now on; revoking a revoked key changes nothing. Returns it fresh."""
    with transaction.atomic():
        revoked = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if revoked:
            audit_record(
                organization_id=api_key.organization_id,
                actor=actor,
                action="api_key.revoked",
                target=api_key_audit_target(api_key),
                data={"name": api_key.name, "prefix": api_key.prefix, "last_four": api_key.last_four},
            )
    api_key.refresh_from_db()
    return api_key


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The key behind a bearer secret, or None when it is unknown, revoked or expired."""
    if not raw_key.startswith(API_KEY_MARKER):
        return None
    prefix = raw_key[: len(API_KEY_MARKER) + _LOOKUP_LENGTH]
    api_key = ApiKey.objects.select_related("organization__automation").filter(prefix=prefix).first()
    if api_key is None or not hmac.compare_digest(api_key.secret_hash, _digest(raw_key)):
        return None
    now = timezone.now()
    if api_key.revoked_at is not None or (api_key.expires_at and api_key.expires_at <= now):
        return None
    if (
        not api_key.last_used_at
        or (now - api_key.last_used_at).total_seconds() > _LAST_USED_RESOLUTION_SECONDS
    ):
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    return api_key


# --- keys made through the API: never more than their maker may do ----------------------------

KEY_LIMIT_NAMES = ("requests_per_minute", "tokens_per_day", "concurrent_turns")


def api_key_audit_target(api_key: ApiKey) -> str:
    return f"api_key:{api_key.pk}"


def _acting_user(principal: Principal) -> User | None:
    # A key made by a key answers to the person behind the first one.
    if principal.user is not None:
        return principal.user
    return principal.api_key.created_by if principal.api_key is not None else None


def _scopes_to_grant(principal: Principal, requested: list[str] | None) -> list[str]:
    grantable = grantable_scopes(principal)
    if requested is None:
        if not grantable:
            raise PermissionDenied("You hold no scope that a key could be given.", param="scopes")
        return grantable
    beyond = [scope for scope in requested if scope not in grantable]
    if beyond:
        raise PermissionDenied(
            f"A key cannot hold more than its creator may do: you may not grant the '{beyond[0]}' scope.",
            param="scopes",
            code="scope_not_grantable",
        )
    return [scope for scope in ALL_SCOPES if scope in requested]


def _cap_by_parent_key(
    parent: ApiKey, *, expires_at: datetime | None, limits: dict[str, int | None]
) -> tuple[datetime | None, dict[str, int | None]]:
    """A key made by a key lives no longer and may do no more per minute, day or moment than
    its maker: what is left out is inherited, what is larger is refused."""
    if parent.expires_at is not None:
        if expires_at is None:
            expires_at = parent.expires_at
        elif expires_at > parent.expires_at:
            raise PermissionDenied(
                "A key cannot outlive the key that creates it.",
                param="expires_at",
                code="limit_not_grantable",
            )
    capped = dict(limits)
    for name in KEY_LIMIT_NAMES:
        ceiling = getattr(parent, name)
        if ceiling is None:
            continue
        if capped.get(name) is None:
            capped[name] = ceiling
        elif capped[name] > ceiling:
            raise PermissionDenied(
                f"A key cannot have a higher {name} than the key that creates it ({ceiling}).",
                param=name,
                code="limit_not_grantable",
            )
    return expires_at, capped


def api_key_issue(
    *,
    principal: Principal,
    name: str,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    requests_per_minute: int | None = None,
    tokens_per_day: int | None = None,
    concurrent_turns: int | None = None,
) -> IssuedApiKey:
    """Mint a key in the principal's organization on the principal's behalf. The key holds the
    requested scopes (default: all the principal may grant) and never more than the principal:
    a user grants at most their role's permissions, a key at most its own scopes, expiry and
    limits. Refusals raise PermissionDenied and create nothing."""
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidRequest("expires_at must be in the future.", param="expires_at", code="invalid_value")
    granted = _scopes_to_grant(principal, scopes)
    limits: dict[str, int | None] = {
        "requests_per_minute": requests_per_minute,
        "tokens_per_day": tokens_per_day,
        "concurrent_turns": concurrent_turns,
    }
    if principal.api_key is not None:
        expires_at, limits = _cap_by_parent_key(principal.api_key, expires_at=expires_at, limits=limits)
    with transaction.atomic():
        issued = api_key_create(
            organization=principal.organization,
            name=name,
            created_by=_acting_user(principal),
            expires_at=expires_at,
            scopes=granted,
            **limits,
        )
        api_key = issued.api_key
        audit_record(
            organization_id=principal.organization.pk,
            actor=principal,
            action="api_key.created",
            target=api_key_audit_target(api_key),
            data={
                "name": api_key.name,
                "prefix": api_key.prefix,
                "last_four": api_key.last_four,
                "scopes": granted,
                "expires_at": expires_at.isoformat() if expires_at else None,
                **limits,
            },
        )
    return issued


def api_keys_cap_to_role(*, membership: Membership, role: str | None, actor: Principal | None) -> None:
    """Keep the keys a person made within what they may do now: scopes beyond their new role
    are taken away, and a key left with none (or a person who left) is revoked."""
    allowed = ROLE_PERMISSIONS.get(role or "", frozenset())
    keys = ApiKey.objects.filter(
        organization=membership.organization, created_by=membership.user, revoked_at__isnull=True
    )
    for api_key in keys:
        kept = [scope for scope in api_key.scopes if scope in allowed]
        if kept == list(api_key.scopes):
            continue
        if not kept:
            api_key_revoke(api_key=api_key, actor=actor)
            continue
        ApiKey.objects.filter(pk=api_key.pk).update(scopes=kept)
        audit_record(
            organization_id=membership.organization_id,
            actor=actor,
            action="api_key.scopes_reduced",
            target=api_key_audit_target(api_key),
            data={"name": api_key.name, "prefix": api_key.prefix, "scopes": kept},
        )
