"""Reads for tenancy and API keys. Every read of a tenant's objects takes the tenant: another
organization's key or member looks exactly like a missing one. The `access_*` helpers are what a
view calls for an object named in its path: the object, or the 404."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import ApiKey, Membership, Organization, User
from accounts.principal import Principal
from config.errors import NotFound
from config.inputs import ascii_int


def _as_id(raw: str | int) -> int | None:
    return ascii_int(str(raw))


def api_key_list(*, organization: Organization) -> QuerySet[ApiKey]:
    return (
        ApiKey.objects.filter(organization=organization)
        .select_related("created_by")
        .order_by("-created", "-id")
    )


def api_key_get(*, organization: Organization, key_id: str | int) -> ApiKey | None:
    pk = _as_id(key_id)
    if pk is None:
        return None
    return api_key_list(organization=organization).filter(pk=pk).first()


def access_api_key(principal: Principal, key_id: str | int) -> ApiKey:
    """The organization's API key with this id (revoked or expired too), or a 404 api_key_not_found."""
    api_key = api_key_get(organization=principal.organization, key_id=key_id)
    if api_key is None:
        raise NotFound(f"No API key found with id '{key_id}'.", param="id", code="api_key_not_found")
    return api_key


def membership_list(*, organization: Organization) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(organization=organization).select_related("user").order_by("created", "id")
    )


def membership_get(*, organization: Organization, user_id: str | int) -> Membership | None:
    pk = _as_id(user_id)
    if pk is None:
        return None
    return membership_list(organization=organization).filter(user_id=pk).first()


def access_member(principal: Principal, user_id: str | int) -> Membership:
    """The membership in the principal's organization of the user with this id, or a 404 member_not_found."""
    membership = membership_get(organization=principal.organization, user_id=user_id)
    if membership is None:
        raise NotFound(f"No member found with id '{user_id}'.", param="user_id", code="member_not_found")
    return membership


def membership_role(*, user: User, organization: Organization) -> str | None:
    """The user's role in the organization, or None when they are not a member."""
    return (
        Membership.objects.filter(user=user, organization=organization).values_list("role", flat=True).first()
    )


def user_find(*, username: str | None = None, email: str | None = None) -> User | None:
    """An existing user by exact username, or by email when exactly one user has it."""
    if username is not None:
        return User.objects.filter(username=username, is_active=True).first()
    if email:
        matches = list(User.objects.filter(email__iexact=email, is_active=True)[:2])
        return matches[0] if len(matches) == 1 else None
    return None
