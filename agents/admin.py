from django import forms
from django.contrib import admin
from rest_framework import serializers

from agents.models import Agent
from agents.services import agent_validate_settings
from config.errors import validation_error


class AgentAdminForm(forms.ModelForm):
    class Meta:
        model = Agent
        fields = [
            "organization",
            "slug",
            "name",
            "backend",
            "backend_config",
            "system_prompt",
            "default_params",
            "tools",
            "max_tool_steps",
            "history_max_messages",
            "history_max_tokens",
            "enabled",
        ]

    def clean(self) -> dict:
        """The same checks as the Agents API: an agent saved here is one the API would accept."""
        cleaned = super().clean()
        if "backend" not in cleaned:
            return cleaned
        existing = Agent.objects.filter(pk=self.instance.pk).first() if self.instance.pk else None
        try:
            cleaned["backend_config"], cleaned["tools"] = agent_validate_settings(
                agent=existing,
                backend=cleaned["backend"],
                backend_config=cleaned.get("backend_config") or {},
                tools=cleaned.get("tools") or [],
            )
        except serializers.ValidationError as exc:
            for problem in validation_error(exc.detail).detail:
                field = problem["loc"][1] if len(problem["loc"]) > 1 else None
                where = ".".join(str(part) for part in problem["loc"][2:])
                self.add_error(
                    field if field in self.fields else None,
                    f"{where}: {problem['msg']}" if where else problem["msg"],
                )
        return cleaned


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentAdminForm
    list_display = ["slug", "organization", "backend", "enabled", "updated"]
    list_filter = ["backend", "enabled"]
    search_fields = ["slug", "name", "organization__slug"]
