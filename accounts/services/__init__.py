"""Writes for tenancy: organizations.py (tenants), keys.py (API keys), members.py (members and
their roles) and audit.py (the audit trail they write). The names below are re-exported so that
`from accounts.services import …` keeps working; new code imports from the module itself."""

from accounts.services.keys import (
    IssuedApiKey,
    api_key_authenticate,
    api_key_create,
    api_key_issue,
    api_key_replace,
    api_key_revoke,
)
from accounts.services.members import membership_add, membership_change_role, membership_remove
from accounts.services.organizations import (
    organization_create,
    organization_get_or_create,
    personal_organization_create,
)

__all__ = [
    "IssuedApiKey",
    "api_key_authenticate",
    "api_key_create",
    "api_key_issue",
    "api_key_replace",
    "api_key_revoke",
    "membership_add",
    "membership_change_role",
    "membership_remove",
    "organization_create",
    "organization_get_or_create",
    "personal_organization_create",
]
