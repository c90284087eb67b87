"""Writes for tenancy and API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, AutomationSettings, Membership, Organization, User
from agents.services import agent_create_defaults

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


def organization_create(*, slug: str, name: str = "", owner: User | None = None) -> Organization:
    """Create a tenant with everything a tenant starts with: automation settings and the
    built-in `echo` agent."""
    with transaction.atomic():
        organization = Organization.objects.create(slug=slug, name=name or slug)
        AutomationSettings.objects.create(organization=organization)
        agent_create_defaults(organization=organization)
        if owner is not None:
            Membership.objects.create(user=owner, organization=organization, role=Membership.Role.OWNER)
    return organization


def organization_get_or_create(*, slug: str) -> tuple[Organization, bool]:
    existing = Organization.objects.filter(slug=slug).first()
    if existing is not None:
        return existing, False
    return organization_create(slug=slug), True


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
) -> IssuedApiKey:
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
    )
    return IssuedApiKey(api_key=api_key, secret=raw_key)


def api_key_revoke(*, api_key: ApiKey) -> None:
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The key behind a bearer secret, or None when it is unknown, revoked or expired."""
    if not raw_key.startswith(API_KEY_MARKER):
        return None
    prefix = raw_key[: len(API_KEY_MARKER) + _LOOKUP_LENGTH]
    api_key = ApiKey.objects.select_related("organization").filter(prefix=prefix).first()
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
