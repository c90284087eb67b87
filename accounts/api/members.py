"""HTTP for the members of an organization: GET and POST /v1/members, GET, PATCH and DELETE
/v1/members/{user_id}. Admins see them; owners manage them."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.models import Membership
from accounts.selectors import access_member, membership_list, user_find
from accounts.services.members import membership_add, membership_change_role, membership_remove
from config.errors import NotFound
from config.inputs import SERVER_SET_FIELDS, refuse_unknown_fields
from sessions.api.fields import StrictCharField

_ROLES = [role.value for role in Membership.Role]


class MemberAddSerializer(serializers.Serializer):
    """An existing user, named by username or by email, and their role (member by default)."""

    username = StrictCharField(required=False, min_length=1, max_length=150)
    email = StrictCharField(required=False, min_length=1, max_length=254)
    role = serializers.ChoiceField(choices=_ROLES, required=False, default=Membership.Role.MEMBER)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        refuse_unknown_fields(data, known=self.fields, server_set=SERVER_SET_FIELDS)
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [name for name in ("username", "email") if name in attrs]
        if len(given) != 1:
            raise serializers.ValidationError(
                {"username": ["Give the user's username or their email (one of them)."]}
            )
        return attrs


class MemberChangeSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=_ROLES)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        refuse_unknown_fields(data, known=self.fields, server_set=SERVER_SET_FIELDS)
        return super().to_internal_value(data)


def member_payload(membership: Membership) -> dict[str, Any]:
    user = membership.user
    return {
        "id": user.pk,
        "object": "organization.member",
        "username": user.username,
        "email": user.email,
        "role": membership.role,
        "created": int(membership.created.timestamp()),
    }


class MemberListView(APIView):
    """GET /v1/members, oldest first; POST /v1/members adds an existing user."""

    def get(self, request: Request) -> JsonResponse:
        members = membership_list(organization=request.user.organization)
        return JsonResponse({"object": "list", "data": [member_payload(member) for member in members]})

    def post(self, request: Request) -> JsonResponse:
        serializer = MemberAddSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        user = user_find(username=data.get("username"), email=data.get("email"))
        if user is None:
            param = "username" if "username" in data else "email"
            raise NotFound(f"No user found with this {param}.", param=param, code="user_not_found")
        membership = membership_add(
            organization=request.user.organization, user=user, role=data["role"], actor=request.user
        )
        return JsonResponse(member_payload(membership), status=201)


class MemberDetailView(APIView):
    """GET, PATCH (the role) and DELETE /v1/members/{user_id}. The last owner stays (409)."""

    def get(self, request: Request, user_id: str) -> JsonResponse:
        return JsonResponse(member_payload(access_member(request.user, user_id)))

    def patch(self, request: Request, user_id: str) -> JsonResponse:
        membership = access_member(request.user, user_id)
        serializer = MemberChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = membership_change_role(
            membership=membership, role=serializer.validated_data["role"], actor=request.user
        )
        return JsonResponse(member_payload(membership))

    def delete(self, request: Request, user_id: str) -> JsonResponse:
        membership_remove(membership=access_member(request.user, user_id), actor=request.user)
        return JsonResponse({"id": int(user_id), "object": "organization.member.deleted", "deleted": True})
