from django.contrib import admin

from agents.models import Agent


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["slug", "organization", "backend", "enabled", "updated"]
    list_filter = ["backend", "enabled"]
    search_fields = ["slug", "name", "organization__slug"]
