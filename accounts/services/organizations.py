"""Writes for organizations (tenants): creating one with everything a tenant starts with."""

from __future__ import annotations

import secrets

from django.db import transaction
from django.utils.text import slugify

from accounts.models import AutomationSettings, Membership, Organization, User
from agents.services import agent_create_defaults


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


def personal_organization_create(*, user: User) -> Organization:
    """The organization a user gets on first sign-in (an OAuth/OIDC login): they own it and it
    becomes their default. Call inside the transaction that creates the user."""
    base = slugify(user.username)[:48].strip("-") or "user"
    slug = f"{base}-{secrets.token_hex(3)}"
    while Organization.objects.filter(slug=slug).exists():
        slug = f"{base}-{secrets.token_hex(3)}"
    display = user.get_full_name() or user.username
    organization = organization_create(slug=slug, name=f"{display}'s organization", owner=user)
    User.objects.filter(pk=user.pk).update(default_organization=organization)
    user.default_organization = organization
    return organization


def organization_get_or_create(*, slug: str) -> tuple[Organization, bool]:
    existing = Organization.objects.filter(slug=slug).first()
    if existing is not None:
        return existing, False
    return organization_create(slug=slug), True
