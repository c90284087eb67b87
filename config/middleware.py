"""Request ids on every answer and log line, and OpenAI's error envelope on every API path,
whatever raised (Django's resolver, a view, a middleware)."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from config.errors import (
    ApiError,
    MethodNotAllowed,
    NotFound,
    ServerError,
    api_error_for,
    error_response,
)

logger = logging.getLogger(__name__)

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# The chat aliases and the NLX route /{deployment}/{channel}/chat/completions are API paths too.
_API_PATH = re.compile(r"^/(v1/|api/|[^/]+/[^/]+/chat/completions/?$)")


def is_api_path(path: str) -> bool:
    return bool(_API_PATH.match(path))


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class _HybridMiddleware:
    """Base for middleware that serves sync and async stacks without a thread hop."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self._acall(request)
        self.before(request)
        return self.after(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        self.before(request)
        return self.after(request, await self.get_response(request))

    def before(self, request: HttpRequest) -> None:
        pass

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        return response


def request_id_for(headers: Mapping[str, str]) -> str:
    """A well-formed incoming X-Request-Id, else a new one; set for the log lines that follow."""
    incoming = headers.get("X-Request-Id", "")
    request_id = incoming if _CLIENT_REQUEST_ID.match(incoming) else f"req_{uuid.uuid4().hex}"
    request_id_var.set(request_id)
    return request_id


class RequestIdMiddleware(_HybridMiddleware):
    """Keeps a well-formed incoming X-Request-Id, else makes one; echoes it on the answer."""

    def before(self, request: HttpRequest) -> None:
        request.request_id = request_id_for(request.headers)

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        response["X-Request-Id"] = request.request_id
        return response


class ApiErrorMiddleware(_HybridMiddleware):
    """Never a Django HTML error page on an API path: errors become the JSON envelope."""

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if response.status_code < 400 or not is_api_path(request.path):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        error = {
            404: NotFound(f"Unknown path: {request.method} {request.path}"),
            405: MethodNotAllowed(f"Method {request.method} is not allowed on {request.path}."),
        }.get(response.status_code)
        if error is None:
            error = ApiError(_reason(response))
            error.status = response.status_code
            if response.status_code >= 500:
                error = ServerError("The server had an error while processing your request.")
        rendered = error_response(error)
        if response.has_header("Allow"):
            rendered["Allow"] = response["Allow"]
        return rendered

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_api_path(request.path):
            return None
        error = api_error_for(exception)
        if error is None:
            logger.exception("Unhandled error on %s %s", request.method, request.path)
            error = ServerError("The server had an error while processing your request.")
        return error_response(error)


def _reason(response: HttpResponse) -> str:
    try:
        return json.loads(response.content).get("detail", response.reason_phrase)
    except (ValueError, AttributeError):
        return response.reason_phrase
