"""The OpenAPI description (/v1/openapi.json) and the docs page (/v1/docs): public, complete
(every API route of the urlconf is in it, so a new endpoint must be documented), and true to
what a live server answers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlparse

import httpx
import jsonschema
import pytest
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, resolve
from drf_spectacular.validation import validate_schema

from accounts.permissions import ANY_METHOD, ENDPOINT_PERMISSIONS, PUBLIC, required_permission
from config import urls
from sessions.api.chat import chat_completions, turn_events
from tests.conftest import Tenant
from tests.live import Stack
from tests.sse import post_stream

HTTP_METHODS = ("get", "post", "put", "patch", "delete")
ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}


# --- helpers -------------------------------------------------------------------------------------


def _routes(patterns: list, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for pattern in patterns:
        route = prefix + _route(pattern)
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, route)
        else:
            yield route, pattern


def _route(pattern: URLPattern | URLResolver) -> str:
    text = str(pattern.pattern)
    if text.startswith("^"):  # re_path: named groups become parameters
        text = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"<\1>", text.lstrip("^").rstrip("$"))
    return text


def _methods(pattern: URLPattern) -> set[str]:
    view_class = getattr(pattern.callback, "cls", None) or getattr(pattern.callback, "view_class", None)
    if view_class is not None:
        return {method for method in HTTP_METHODS if hasattr(view_class, method)}
    # A plain view: the permission table says which methods it serves ("*": a public page, GET).
    rules = ENDPOINT_PERMISSIONS.get(pattern.name or "", {})
    methods = {"get" if method == ANY_METHOD else method.lower() for method in rules}
    assert methods, f"Cannot tell which methods the plain view {pattern.name!r} serves."
    return methods


def routed_api_operations() -> set[tuple[str, str]]:
    """(OpenAPI path, method) of every API endpoint of the real urlconf: every route under v1/
    or api/, and every route the permission table names (the NLX route, health checks)."""
    operations = set()
    for route, pattern in _routes(urls.urlpatterns):
        if not (route.startswith(("v1/", "api/")) or pattern.name in ENDPOINT_PERMISSIONS):
            continue
        path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        operations |= {(path, method) for method in _methods(pattern)}
    return operations


def operations(schema: dict) -> Iterator[tuple[str, str, dict]]:
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def resolved(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def as_json_schema(node: Any, components: dict) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema, references expanded, `nullable` as a null branch,
    and objects closed: a field the description does not name fails validation."""
    if isinstance(node, list):
        return [as_json_schema(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return as_json_schema(components[node["$ref"].rsplit("/", 1)[-1]], components)
    converted = {key: as_json_schema(value, components) for key, value in node.items() if key != "nullable"}
    if "properties" in converted and "additionalProperties" not in converted:
        converted["additionalProperties"] = False
    if node.get("nullable"):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def check_documented(schema: dict, template: str, method: str, response: httpx.Response) -> None:
    """The answer has a documented status and matches the schema documented for it."""
    documented = schema["paths"][template][method]["responses"]
    assert str(response.status_code) in documented, (template, method, response.status_code, response.text)
    media = documented[str(response.status_code)]["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), as_json_schema(media, schema["components"]["schemas"]))


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script" and attributes.get("src"):
            self.urls.append(attributes["src"])
        if tag == "link" and attributes.get("href"):
            self.urls.append(attributes["href"])


@pytest.fixture(scope="module")
def schema(stack: Stack) -> dict:
    response = httpx.get(f"{stack.url}/v1/openapi.json", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


# --- the description -------------------------------------------------------------------------------


def test_openapi_json_is_public_json_even_with_a_bad_key(stack: Stack) -> None:
    # when
    anonymous = httpx.get(f"{stack.url}/v1/openapi.json", timeout=30)
    bad_key = httpx.get(
        f"{stack.url}/v1/openapi.json", headers={"Authorization": "Bearer sk-parley-wrong"}, timeout=30
    )

    # then
    for response in (anonymous, bad_key):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert response.headers["x-request-id"]
        document = response.json()
        assert document["openapi"].startswith("3.")
        validate_schema(document)  # against the OpenAPI 3.0 JSON Schema that drf-spectacular ships
        assert document["info"]["title"] == "Parley API"
        assert document["components"]["securitySchemes"]["bearerAuth"] == {
            "type": "http",
            "scheme": "bearer",
            "description": document["components"]["securitySchemes"]["bearerAuth"]["description"],
        }


def test_every_api_route_is_documented_with_its_methods(schema: dict) -> None:
    documented = {(path, method) for path, method, _ in operations(schema)}

    missing = routed_api_operations() - documented

    assert missing == set()
    assert {("/v1/chat/completions", "post"), ("/v1/turns/{turn_id}/events", "get")} <= documented
    assert ("/{deployment}/{channel}/chat/completions", "post") in documented


def test_every_operation_has_a_summary_a_tag_a_unique_id_and_its_security(schema: dict) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(schema)]
    assert len(ids) == len(set(ids))
    tags = {tag["name"] for tag in schema["tags"]}
    for path, method, operation in operations(schema):
        assert operation["summary"], (path, method)
        assert set(operation["tags"]) <= tags, (path, method)
        name = resolve(path.replace("{", "").replace("}", "")).url_name
        if required_permission(name, method.upper()) == PUBLIC:
            assert {"bearerAuth": []} not in operation["security"], (path, method)
        else:
            assert operation["security"] == [{"bearerAuth": []}], (path, method)
            assert "**Permission**" in operation["description"], (path, method)


def test_chat_completion_documents_the_request_the_session_extensions_and_streaming(schema: dict) -> None:
    operation = schema["paths"]["/v1/chat/completions"]["post"]

    request = resolved(schema, operation["requestBody"]["content"]["application/json"]["schema"])
    assert request["required"] == ["messages"]
    assert {
        "session_id",
        "conversation_id",
        "thread_id",
        "conversation",
        "session_reset",
        "messages",
        "model",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "response_format",
    } <= set(request["properties"])
    assert "agent:session" in request["properties"]["model"]["description"]
    stream_options = resolved(schema, request["properties"]["stream_options"]["oneOf"][0])  # or null
    assert {"include_usage", "include_tool_steps"} <= set(stream_options["properties"])

    answer = operation["responses"]["200"]
    assert set(answer["content"]) == {"application/json", "text/event-stream"}
    completion = resolved(schema, answer["content"]["application/json"]["schema"])
    assert completion["properties"]["object"]["enum"] == ["chat.completion"]
    assert "session_id" in completion["properties"]
    assert answer["content"]["text/event-stream"]["schema"]["properties"]["data"]["type"] == "string"
    assert {"X-Session-Id", "X-Turn-Id", "X-Request-Id"} <= set(answer["headers"])
    assert "Idempotency-Key" in {parameter.get("name") for parameter in operation["parameters"]}
    for extension in ("agent:session", "X-Session-Id", "Idempotency-Key", "include_tool_steps", "[DONE]"):
        assert extension in operation["description"], extension
    assert "ChatCompletionChunk" in schema["components"]["schemas"]

    for alias in ("/api/v1/chat/completions", "/api/ai/chat/completions"):
        assert schema["paths"][alias]["post"]["requestBody"] == operation["requestBody"]
    nlx = schema["paths"]["/{deployment}/{channel}/chat/completions"]["post"]
    assert {"deployment", "channel"} <= {parameter.get("name") for parameter in nlx["parameters"]}
    assert "nlx:{conversationId}" in nlx["description"]


def test_the_error_envelope_is_one_component_that_every_error_answer_uses(schema: dict) -> None:
    envelope = schema["components"]["schemas"]["ErrorResponse"]
    assert envelope["required"] == ["error"]
    error = resolved(schema, envelope["properties"]["error"])
    assert set(error["properties"]) == {"message", "type", "param", "code"}
    item = resolved(schema, envelope["properties"]["detail"]["items"])
    assert set(item["properties"]) == {"loc", "msg", "type"}

    for path, method, operation in operations(schema):
        responses = operation["responses"]
        for status, response in responses.items():
            if status >= "400" and status != "503":  # /readyz answers 503 in its own shape
                assert response["content"] == {"application/json": {"schema": ERROR_REF}}, (path, status)
        expected = set()
        if "requestBody" in operation:
            expected |= {"400", "413"}
        if operation["security"]:
            expected.add("401")
        if "{" in path:
            expected.add("404")
        assert expected <= set(responses), (path, method, expected - set(responses))


def test_links_lead_from_an_answer_to_the_operations_on_what_it_names(schema: dict) -> None:
    by_id = {operation["operationId"]: path for path, _, operation in operations(schema)}
    linked = set()
    for path, method, operation in operations(schema):
        for response in operation["responses"].values():
            for link in response.get("links", {}).values():
                # Every path parameter of the target comes from the answer.
                target_parameters = set(re.findall(r"{(\w+)}", by_id[link["operationId"]]))
                assert set(link["parameters"]) == target_parameters, (path, method, link)
                assert all(value.startswith("$response.") for value in link["parameters"].values())
                linked.add((operation["operationId"], link["operationId"]))

    assert {
        ("createSession", "retrieveSession"),
        ("createSession", "updateSession"),
        ("createSession", "forkSession"),
        ("createSession", "exportSession"),
        ("createSession", "deleteSession"),
        ("createApiKey", "retrieveApiKey"),
        ("createApiKey", "revokeApiKey"),
        ("createAgent", "retrieveAgent"),
        ("createAgent", "updateAgent"),
        ("createAgent", "deleteAgent"),
        ("createChatCompletion", "retrieveTurn"),
        ("createChatCompletion", "streamTurnEvents"),
        ("createChatCompletion", "cancelTurn"),
        ("createChatCompletion", "retrieveSession"),
    } <= linked


# --- true to the live server --------------------------------------------------------------------


def test_documented_answers_match_the_live_answers(schema: dict, stack: Stack, tenant: Tenant) -> None:
    client = httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {tenant.key}"}, timeout=30)
    with client:

        def check(method: str, template: str, path: str, **kwargs: Any) -> httpx.Response:
            response = client.request(method, path, **kwargs)
            check_documented(schema, template, method.lower(), response)
            return response

        user_message = {"role": "user", "content": "hello"}
        chat = check(
            "POST",
            "/v1/chat/completions",
            "/v1/chat/completions",
            json={"model": "echo", "messages": [user_message]},
        )
        assert chat.status_code == 200
        session_id, turn_id = chat.json()["session_id"], chat.headers["x-turn-id"]
        check("GET", "/v1/models", "/v1/models")
        check("GET", "/v1/models/{slug}", "/v1/models/echo")
        check("GET", "/v1/agents", "/v1/agents")
        check("GET", "/v1/agents/{slug}", "/v1/agents/echo")
        check("GET", "/v1/sessions", "/v1/sessions")
        check("GET", "/v1/sessions/{session_id}", f"/v1/sessions/{session_id}")
        check("PATCH", "/v1/sessions/{session_id}", f"/v1/sessions/{session_id}", json={"title": "Docs"})
        check("GET", "/v1/sessions/{session_id}/export", f"/v1/sessions/{session_id}/export")
        fork = check(
            "POST", "/v1/sessions/{session_id}/fork", f"/v1/sessions/{session_id}/fork", json={"messages": 1}
        )
        check("DELETE", "/v1/sessions/{session_id}", f"/v1/sessions/{fork.json()['id']}")
        check("POST", "/v1/sessions", "/v1/sessions", json={"title": "Empty", "metadata": {"k": "v"}})
        check("GET", "/v1/turns/{turn_id}", f"/v1/turns/{turn_id}")
        check("POST", "/v1/turns/{turn_id}/cancel", f"/v1/turns/{turn_id}/cancel")
        check("GET", "/v1/settings/automation", "/v1/settings/automation")
        for group_by in ("day", "agent", "key"):
            check("GET", "/v1/usage", "/v1/usage", params={"group_by": group_by})
        check("GET", "/v1/api-keys", "/v1/api-keys")
        check("GET", "/v1/api-keys/{key_id}", f"/v1/api-keys/{tenant.api_key.pk}")
        check("GET", "/v1/members", "/v1/members")

        # Errors: the envelope, with `detail` for invalid input.
        invalid = check(
            "POST",
            "/v1/chat/completions",
            "/v1/chat/completions",
            json={"model": "echo", "messages": [user_message], "temperature": 5},
        )
        assert invalid.status_code == 400 and invalid.json()["detail"]
        missing = check("GET", "/v1/sessions/{session_id}", "/v1/sessions/no-such-session")
        assert missing.status_code == 404
        anonymous = httpx.get(f"{stack.url}/v1/sessions", timeout=30)
        check_documented(schema, "/v1/sessions", "get", anonymous)
        assert anonymous.status_code == 401


def test_documented_stream_chunks_match_the_live_stream(schema: dict, stack: Stack, tenant: Tenant) -> None:
    chunk = as_json_schema(
        schema["components"]["schemas"]["ChatCompletionChunk"], schema["components"]["schemas"]
    )
    body = {
        "model": "echo",
        "messages": [{"role": "user", "content": "stream me"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    response, read = post_stream(f"{stack.api_url}/chat/completions", tenant.key, body)

    assert response.status_code == 200
    assert read is not None and read.done_count == 1 and read.errors == []
    assert len(read.chunks) >= 2
    for event in read.chunks:
        jsonschema.validate(event, chunk)
    assert read.chunks[-1]["usage"]["total_tokens"] > 0


# --- the docs page -------------------------------------------------------------------------------


def test_docs_page_is_public_html_whose_scripts_and_styles_this_server_serves(stack: Stack) -> None:
    page = httpx.get(f"{stack.url}/v1/docs", timeout=30)

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/v1/openapi.json" in page.text
    assert "cdn." not in page.text and "unpkg" not in page.text
    parser = _Assets()
    parser.feed(page.text)
    assets = [urljoin(str(page.url), url) for url in parser.urls]
    assert any(asset.endswith(".js") for asset in assets) and any(asset.endswith(".css") for asset in assets)
    for asset in assets:
        assert urlparse(asset).netloc == urlparse(stack.url).netloc, asset
        response = httpx.get(asset, timeout=30)
        assert response.status_code == 200, asset
        assert response.content, asset


# --- the generator (no live server) -----------------------------------------------------------------


def test_schema_generation_is_valid_and_free_of_warnings(tmp_path) -> None:
    # --fail-on-warn: an endpoint whose answers drf-spectacular cannot read fails here.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "openapi.yaml"))

    assert (tmp_path / "openapi.yaml").read_text().startswith("openapi: 3.")


def test_every_documented_operation_is_routed(schema: dict) -> None:
    # No documentation of an endpoint that is not served (the views' @extend_schema).
    documented = {(path, method) for path, method, _ in operations(schema)}

    assert documented - routed_api_operations() == set()


def test_the_plain_views_still_serve_their_routes() -> None:
    # The documentation-only views exist for the schema generator, never for traffic.
    assert resolve("/v1/chat/completions").func is chat_completions
    assert resolve("/v1/turns/turn_1/events").func is turn_events
