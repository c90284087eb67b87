from __future__ import annotations

from django.db import models


class Agent(models.Model):
    """A tenant's named agent configuration; its slug is the `model` clients ask for."""

    class Backend(models.TextChoices):
        ECHO = "echo", "Echo (built in, deterministic)"
        OPENAI = "openai", "OpenAI-compatible upstream"
        WEBHOOK = "webhook", "Customer webhook"

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="agents")
    slug = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    backend = models.CharField(max_length=32, choices=Backend.choices, default=Backend.ECHO)
    backend_config = models.JSONField(default=dict, blank=True)
    system_prompt = models.TextField(blank=True)
    default_params = models.JSONField(default=dict, blank=True)
    # Server-side tools, run on the worker: [{"type": "calculator"}, {"type": "http", ...}, ...]
    tools = models.JSONField(default=list, blank=True)
    max_tool_steps = models.PositiveSmallIntegerField(default=5)
    # The history window: the most recent messages within both limits (null: no limit).
    history_max_messages = models.PositiveIntegerField(null=True, blank=True)
    history_max_tokens = models.PositiveIntegerField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="agent_unique_slug_per_org"),
        ]
        ordering = ["slug"]

    def __str__(self) -> str:
        return f"{self.organization.slug}/{self.slug}"
