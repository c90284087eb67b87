from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from accounts.models import ApiKey, AutomationSettings, Membership, Organization, User
from accounts.services.organizations import organization_create

admin.site.register(User, UserAdmin)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "created"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]

    def save_model(self, request, obj: Organization, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        # A new tenant starts with its settings and the echo agent, as everywhere else.
        created = organization_create(slug=obj.slug, name=obj.name)
        obj.pk, obj.created = created.pk, created.created


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are minted with `manage.py createapikey` (the secret is shown once, there); the
    admin shows and revokes them but never holds a secret."""

    list_display = [
        "name",
        "organization",
        "prefix",
        "last_four",
        "created",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = ["organization"]
    search_fields = ["name", "prefix", "organization__slug"]
    readonly_fields = ["prefix", "secret_hash", "last_four", "created", "last_used_at", "created_by"]
    exclude = ["secret_hash"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(AutomationSettings)
class AutomationSettingsAdmin(admin.ModelAdmin):
    list_display = ["organization", "auto_create_sessions"]
