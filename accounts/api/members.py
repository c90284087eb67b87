"""HTTP for the members of an organization: GET and POST /v1/members, GET, PATCH and DELETE
/v1/members/{user_id}. Admins see them; owners manage them."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.api.shapes import MEMBER_ROLES, MemberDeletedSerializer, MemberListSerializer, MemberSerializer
from accounts.models import Membership
from accounts.selectors import access_member, membership_list, user_find
from accounts.services.members import membership_add, membership_change_role, membership_remove
from config.errors import NotFound
from config.inputs import SERVER_SET_FIELDS, refuse_unknown_fields
from config.openapi.parts import USER_ID, error, request_example
from sessions.api.fields import StrictCharField


class MemberAddSerializer(serializers.Serializer):
    """An existing user, named by username or by email, and their role (member by default)."""

    username = StrictCharField(required=False, min_length=1, max_length=150)
    email = StrictCharField(required=False, min_length=1, max_length=254)
    role = serializers.ChoiceField(choices=MEMBER_ROLES, required=False, default=Membership.Role.MEMBER)

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
    role = serializers.ChoiceField(choices=MEMBER_ROLES)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        refuse_unknown_fields(data, known=self.fields, server_set=SERVER_SET_FIELDS)
        return super().to_internal_value(data)


class MemberListView(APIView):
    """GET /v1/members, oldest first; POST /v1/members adds an existing user."""

    @extend_schema(
        operation_id="listMembers",
        summary="List the organization's members",
        tags=["Members"],
        responses=MemberListSerializer,
    )
    def get(self, request: Request) -> JsonResponse:
        members = membership_list(organization=request.user.organization)
        return JsonResponse(MemberListSerializer({"data": members}).data)

    @extend_schema(
        operation_id="addMember",
        summary="Add a member",
        tags=["Members"],
        request=MemberAddSerializer,
        responses={201: MemberSerializer, 409: error("The user is already a member.")},
        examples=[request_example("A member by username", {"username": "bob", "role": "member"})],
    )
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
        return JsonResponse(MemberSerializer(membership).data, status=201)


class MemberDetailView(APIView):
    """GET, PATCH (the role) and DELETE /v1/members/{user_id}. The last owner stays (409)."""

    patch_validates_whole_body = True  # the role is required (config/openapi/schema.py)

    @extend_schema(
        operation_id="retrieveMember",
        summary="Retrieve a member",
        tags=["Members"],
        parameters=[USER_ID],
        responses=MemberSerializer,
    )
    def get(self, request: Request, user_id: str) -> JsonResponse:
        return JsonResponse(MemberSerializer(access_member(request.user, user_id)).data)

    @extend_schema(
        operation_id="changeMemberRole",
        summary="Change a member's role",
        tags=["Members"],
        parameters=[USER_ID],
        request=MemberChangeSerializer,
        responses={200: MemberSerializer, 409: error("The organization's last owner stays an owner.")},
        examples=[request_example("Make an admin", {"role": "admin"})],
    )
    def patch(self, request: Request, user_id: str) -> JsonResponse:
        membership = access_member(request.user, user_id)
        serializer = MemberChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = membership_change_role(
            membership=membership, role=serializer.validated_data["role"], actor=request.user
        )
        return JsonResponse(MemberSerializer(membership).data)

    @extend_schema(
        operation_id="removeMember",
        summary="Remove a member",
        tags=["Members"],
        parameters=[USER_ID],
        responses={200: MemberDeletedSerializer, 409: error("The organization's last owner stays.")},
    )
    def delete(self, request: Request, user_id: str) -> JsonResponse:
        membership_remove(membership=access_member(request.user, user_id), actor=request.user)
        return JsonResponse(MemberDeletedSerializer({"id": int(user_id)}).data)
