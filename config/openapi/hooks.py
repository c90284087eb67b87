"""What every operation shares, added after generation: the API's description and tags, the error
envelope (one component, on every operation's 4xx and 5xx answers), security, and the permission
each operation needs (from accounts/permissions.py)."""

from __future__ import annotations

import copy
from http import HTTPStatus
from typing import Any

from accounts.permissions import KEY_SCOPES, PUBLIC, ROLE_PERMISSIONS, required_permission
from config.openapi.parts import ERROR_REF
from config.openapi.schema import BEARER, canonical_paths, route_names
from sessions.api.chat_serializers import TOKEN_ID

API_DESCRIPTION = """Parley is an OpenAI-compatible, session-aware agent platform. Point an OpenAI
client at `/v1` and it works as it does with OpenAI; add a `session_id` (or `conversation_id`,
`thread_id`, `conversation`, or `"model": "agent:session"`) and send only the new message: the
server keeps the history.

**Authentication**: `Authorization: Bearer …` with an API key (`sk-parley-…`) or a user's JWT
access token (POST /v1/auth/token). A user acts in the organization named by the `X-Organization`
header, else their default one. Each endpoint needs a permission: an API key holds its scopes
(`chat`, `sessions:read`, `sessions:write`, `admin`); a user those of their role (member: chat and
sessions; admin: also agents, keys and settings; owner: also members).

**Errors** share one envelope, OpenAI's (`ErrorResponse`): `{"error": {"message", "type", "param",
"code"}}`, plus `detail: [{loc, msg, type}]` naming every invalid field. 400 invalid input, 401
bad or missing credentials, 403 not allowed, 404 unknown or another organization's object
(indistinguishable), 409 conflict, 413 too large, 429 rate limited (with `Retry-After`), 5xx
server faults.

**Headers**: every answer carries `X-Request-Id` (send a well-formed one to choose it); chat
answers also `X-Session-Id` and `X-Turn-Id`."""

TAGS = [
    ("Chat", "OpenAI's Chat Completions, with sessions."),
    ("Models", "The agents a client may name as `model`."),
    ("Sessions", "Conversations the server remembers."),
    ("Turns", "One request's run of an agent: its state, its event stream, cancelling it."),
    ("Agents", "Configure the organization's agents."),
    ("API keys", "Mint, list and revoke keys."),
    ("Members", "Who belongs to the organization, with which role."),
    ("Settings", "How sessions behave."),
    ("Usage", "What the organization's turns used."),
    ("Authentication", "JWTs for users."),
    ("Operability", "Health, readiness and this description."),
]

ERROR_SCHEMAS: dict[str, Any] = {
    "ErrorResponse": {
        "type": "object",
        "description": "Every error answer: OpenAI's envelope, plus `detail` for invalid input.",
        "properties": {
            "error": {"$ref": "#/components/schemas/ErrorObject"},
            "detail": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/ValidationErrorItem"},
                "description": "Every invalid field (validation errors only).",
            },
        },
        "required": ["error"],
        "example": {
            "error": {
                "message": "Invalid value for 'temperature': Ensure this value is less than or equal to 2.",
                "type": "invalid_request_error",
                "param": "temperature",
                "code": "invalid_value",
            },
            "detail": [
                {
                    "loc": ["body", "temperature"],
                    "msg": "Ensure this value is less than or equal to 2.",
                    "type": "max_value",
                }
            ],
        },
    },
    "ErrorObject": {
        "type": "object",
        "properties": {
            "message": {"type": "string"},
            "type": {
                "type": "string",
                "description": "`invalid_request_error`, `authentication_error`, `permission_error`, "
                "`rate_limit_error`, `insufficient_quota`, `server_error`, `timeout_error`.",
            },
            "param": {"type": ["string", "null"], "description": "The field at fault."},
            "code": {"type": ["string", "null"], "description": "A stable, machine-readable code."},
        },
        "required": ["message", "type", "param", "code"],
    },
    "ValidationErrorItem": {
        "type": "object",
        "properties": {
            "loc": {
                "type": "array",
                "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                "description": 'Where: `["body", "messages", 0, "content"]`.',
            },
            "msg": {"type": "string"},
            "type": {"type": "string", "description": "What is wrong: `required`, `max_value`, …"},
        },
        "required": ["loc", "msg", "type"],
    },
}

X_ORGANIZATION = {
    "name": "X-Organization",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "With a user's JWT: the slug of the organization to act in (default: the user's "
    "default one). Ignored for API keys, which belong to one organization.",
}
X_REQUEST_ID = {"description": "The request's id, as in the server's logs.", "schema": {"type": "string"}}
RETRY_AFTER = {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}

ERROR_DESCRIPTIONS = {
    400: "Invalid input: malformed JSON, a missing field, a wrong type or a value out of range. "
    "`param` names the first field at fault, `detail` every one.",
    401: "Missing, malformed, revoked or expired credentials.",
    403: "The credentials do not hold the permission this operation needs.",
    404: "Not found; another organization's object looks missing too.",
    413: "The request body is larger than the server's limit.",
    500: "A server fault.",
}
SESSION_ID_PATTERN = "^[A-Za-z0-9._:-]{1,128}$"
SESSION_ID_FIELDS = {
    "ChatCompletionRequest": ("session_id", "conversation_id", "thread_id", "conversation"),
    "ConversationObject": ("id",),
    "SessionCreate": ("id",),
    "SessionFork": ("id",),
}
# What never fails for want of credentials or objects.
_NO_ERRORS = frozenset({"openapi-schema", "docs", "healthz", "readyz"})


def postprocess_schema(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """Description, tags, the error envelope, security and permissions, for every operation."""
    result["info"]["description"] = API_DESCRIPTION
    result["tags"] = [{"name": name, "description": text} for name, text in TAGS]
    components = result.setdefault("components", {})
    components.setdefault("schemas", {}).update(copy.deepcopy(ERROR_SCHEMAS))
    components["parameters"] = {"XOrganization": X_ORGANIZATION}
    components["headers"] = {"XRequestId": X_REQUEST_ID, "RetryAfter": RETRY_AFTER}
    components.setdefault("securitySchemes", {})
    result["security"] = [{BEARER: []}]
    _describe_fields(components["schemas"])
    for path, methods in result["paths"].items():
        name = route_names().get(path, "")
        for method, operation in methods.items():
            _complete_operation(operation, name=name, path=path, method=method)
    _constants_as_enums(result)
    return result


def _complete_operation(operation: dict[str, Any], *, name: str, path: str, method: str) -> None:
    responses = operation.setdefault("responses", {})
    if name not in _NO_ERRORS:
        for status, description in _error_statuses(operation, name=name, path=path, method=method).items():
            responses.setdefault(str(status), _error_response(status, description))
    # The answers first, as the view lists them, then the errors by status.
    ordered = sorted(
        responses.items(), key=lambda item: (item[0] >= "400", item[0] if item[0] >= "400" else "")
    )
    operation["responses"] = responses = dict(ordered)
    for status, response in responses.items():
        if not response.get("description"):
            response["description"] = HTTPStatus(int(status)).phrase
        headers = response.setdefault("headers", {})
        if status == "429":
            headers.setdefault("Retry-After", {"$ref": "#/components/headers/RetryAfter"})
        headers.setdefault("X-Request-Id", {"$ref": "#/components/headers/XRequestId"})
    permission = required_permission(name, method.upper())
    if permission == PUBLIC:
        # Public: no bearer needed (a view's own scheme, like the session cookie, stays).
        operation["security"] = [
            requirement
            for requirement in operation.get("security", [])
            if requirement and BEARER not in requirement
        ]
    else:
        operation["security"] = [{BEARER: []}]
        operation.setdefault("parameters", []).append({"$ref": "#/components/parameters/XOrganization"})
        operation["description"] = _with_permission_note(operation.get("description", ""), permission)
    canonical = canonical_paths().get(name)
    if canonical and canonical != path:
        operation["summary"] = f"{operation.get('summary', '')} (alias of {canonical})".strip()


def _describe_fields(schemas: dict[str, Any]) -> None:
    # Session ids are checked by a function (serializers._session_id), which drf-spectacular cannot read.
    for component, names in SESSION_ID_FIELDS.items():
        properties = schemas.get(component, {}).get("properties", {})
        for name in names:
            for option in [properties.get(name, {}), *properties.get(name, {}).get("oneOf", [])]:
                if "string" in option.get("type", ()):
                    option["pattern"] = SESSION_ID_PATTERN
    # So are logit_bias's keys (validate_logit_bias).
    for component in ("ChatCompletionRequest", "DefaultParams"):
        logit_bias = schemas.get(component, {}).get("properties", {}).get("logit_bias")
        if logit_bias is not None:
            logit_bias["propertyNames"] = {"pattern": f"^{TOKEN_ID.pattern}$"}


def _error_statuses(operation: dict[str, Any], *, name: str, path: str, method: str) -> dict[int, str]:
    statuses: dict[int, str] = {}
    has_body = "requestBody" in operation
    has_input = has_body or any(
        parameter.get("in") in ("query", "header") for parameter in operation.get("parameters", [])
    )
    if has_input:
        statuses[400] = ERROR_DESCRIPTIONS[400]
    statuses[401] = ERROR_DESCRIPTIONS[401]
    if required_permission(name, method.upper()) != PUBLIC:
        statuses[403] = ERROR_DESCRIPTIONS[403]
    if "{" in path:
        statuses[404] = ERROR_DESCRIPTIONS[404]
    if has_body:
        statuses[413] = ERROR_DESCRIPTIONS[413]
    statuses[500] = ERROR_DESCRIPTIONS[500]
    return statuses


def _error_response(status: int, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


def _with_permission_note(description: str, permission: str | None) -> str:
    if permission is None:  # not in the table yet: refused to everyone
        return description
    roles = [role for role, held in ROLE_PERMISSIONS.items() if permission in held]
    if permission in KEY_SCOPES:
        who = f"an API key with the `{permission}` scope, or a user whose role is {_either(roles)}"
    elif roles:
        who = f"a user whose role is {_either(roles)} (no API key)"
    else:
        who = "any valid credentials"
    note = f"**Permission**: `{permission}`: {who}."
    return f"{description}\n\n{note}" if description else note


def _either(roles: list[str]) -> str:
    names = [f"`{role}`" for role in roles]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" or {names[-1]}"


def _constants_as_enums(node: Any) -> None:
    if isinstance(node, dict):
        if "x-parley-constant" in node:
            node["enum"] = [node.pop("x-parley-constant")]
        for value in node.values():
            _constants_as_enums(value)
    elif isinstance(node, list):
        for item in node:
            _constants_as_enums(item)
