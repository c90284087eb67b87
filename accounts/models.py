from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """Parley's own user model, in place from the first migration so it can grow."""

    # The organization a user's requests act in when they name none (X-Organization).
    default_organization = models.ForeignKey(
        "accounts.Organization", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )


class Organization(models.Model):
    """A tenant: every agent, session, key and setting belongs to exactly one."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    created = models.DateTimeField(auto_now_add=True)
    # Limits for the whole organization (null: none), counted across every process in Redis.
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_day = models.PositiveIntegerField(null=True, blank=True)
    concurrent_turns = models.PositiveIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        MEMBER = "member"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="membership_unique_user_org"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


ALL_SCOPES = ["chat", "sessions:read", "sessions:write", "admin"]


def all_scopes() -> list[str]:
    return list(ALL_SCOPES)


class ApiKey(models.Model):
    """An organization's API key. The secret is never stored: only its SHA-256 digest, found
    through the public `prefix` that the key itself starts with."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=32, unique=True)
    secret_hash = models.CharField(max_length=64)
    last_four = models.CharField(max_length=4)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    scopes = models.JSONField(default=all_scopes)
    # Limits for this key (null: none), within the organization's.
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_day = models.PositiveIntegerField(null=True, blank=True)
    concurrent_turns = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…{self.last_four})"


class AutomationSettings(models.Model):
    """How an organization's sessions behave (GET/PUT /v1/settings/automation)."""

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="automation")
    auto_create_sessions = models.BooleanField(default=True)
    # Sessions idle this long (seconds) are deleted by a periodic task; null: kept.
    session_idle_ttl = models.PositiveIntegerField(null=True, blank=True)
    # The history window for every agent of the organization, over the agents' own (null: theirs).
    history_max_messages = models.PositiveIntegerField(null=True, blank=True)
    history_max_tokens = models.PositiveIntegerField(null=True, blank=True)
    # Name a new session from its first user message.
    auto_title = models.BooleanField(default=False)
    # The agent of a request that names no `model`.
    default_agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name_plural = "automation settings"

    def __str__(self) -> str:
        return f"automation of {self.organization}"


class AuditEvent(models.Model):
    """Who did what to an organization's keys, members, agents and settings. Never holds a secret."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="audit_events")
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=64)  # e.g. "api_key.created", "member.removed"
    target = models.CharField(max_length=200, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.organization.slug}: {self.action} {self.target}"
