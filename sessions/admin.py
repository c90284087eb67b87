from django.contrib import admin

from sessions.models import Message, Session, Turn


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ["seq", "role", "content", "name", "tool_calls", "tool_call_id", "turn", "created"]
    readonly_fields = fields
    can_delete = False


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = ["external_id", "organization", "agent", "title", "message_count", "created", "updated"]
    list_filter = ["organization"]
    search_fields = ["external_id", "title"]
    inlines = [MessageInline]


@admin.register(Turn)
class TurnAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "organization",
        "session",
        "status",
        "model",
        "attempts",
        "queued_at",
        "finished_at",
    ]
    list_filter = ["status", "organization"]
    search_fields = ["id", "session__external_id"]
    readonly_fields = [field.name for field in Turn._meta.fields]
