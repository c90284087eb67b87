"""Writes for the members of an organization: owners manage them; an organization always keeps
an owner, and the keys a member made stay within what the member may do."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from accounts.models import Membership, Organization, User
from accounts.principal import Principal
from accounts.services.audit import audit_record
from accounts.services.keys import api_keys_cap_to_role
from config.errors import Conflict


def _lock_organization(organization: Organization) -> None:
    # Membership changes of one organization queue here, so that two owners demoting each
    # other at once cannot leave it with none.
    Organization.objects.select_for_update().filter(pk=organization.pk).first()


def _owner_count(organization: Organization) -> int:
    return Membership.objects.filter(organization=organization, role=Membership.Role.OWNER).count()


def _refuse_losing_the_last_owner(membership: Membership) -> None:
    if membership.role == Membership.Role.OWNER and _owner_count(membership.organization) <= 1:
        raise Conflict("An organization needs an owner: make someone else an owner first.", code="last_owner")


def membership_add(
    *, organization: Organization, user: User, role: str, actor: Principal | None = None
) -> Membership:
    """Add an existing user to the organization. A user with no default organization gets this
    one. Conflict when they are a member already."""
    try:
        with transaction.atomic():
            membership = Membership.objects.create(user=user, organization=organization, role=role)
            if user.default_organization_id is None:
                User.objects.filter(pk=user.pk, default_organization__isnull=True).update(
                    default_organization=organization
                )
            audit_record(
                organization_id=organization.pk,
                actor=actor,
                action="member.added",
                target=f"user:{user.pk}",
                data={"username": user.username, "role": role},
            )
    except IntegrityError:
        raise Conflict(f"'{user.username}' is already a member.", code="member_exists") from None
    return membership


def membership_change_role(
    *, membership: Membership, role: str, actor: Principal | None = None
) -> Membership:
    """Change a member's role; Conflict when that would leave the organization without an owner."""
    with transaction.atomic():
        _lock_organization(membership.organization)
        membership = Membership.objects.select_related("user", "organization").get(pk=membership.pk)
        previous = membership.role
        if previous == role:
            return membership
        if role != Membership.Role.OWNER:
            _refuse_losing_the_last_owner(membership)
        Membership.objects.filter(pk=membership.pk).update(role=role)
        membership.role = role
        audit_record(
            organization_id=membership.organization_id,
            actor=actor,
            action="member.role_changed",
            target=f"user:{membership.user_id}",
            data={"username": membership.user.username, "from": previous, "to": role},
        )
        api_keys_cap_to_role(membership=membership, role=role, actor=actor)
    return membership


def membership_remove(*, membership: Membership, actor: Principal | None = None) -> None:
    """Remove a member and revoke the keys they made here; Conflict for the last owner."""
    with transaction.atomic():
        _lock_organization(membership.organization)
        membership = Membership.objects.select_related("user", "organization").get(pk=membership.pk)
        _refuse_losing_the_last_owner(membership)
        api_keys_cap_to_role(membership=membership, role=None, actor=actor)
        membership.delete()
        user = membership.user
        if user.default_organization_id == membership.organization_id:
            other = (
                Membership.objects.filter(user=user)
                .order_by("created")
                .values_list("organization_id", flat=True)
            ).first()
            User.objects.filter(pk=user.pk).update(default_organization_id=other)
        audit_record(
            organization_id=membership.organization_id,
            actor=actor,
            action="member.removed",
            target=f"user:{user.pk}",
            data={"username": user.username, "role": membership.role},
        )
