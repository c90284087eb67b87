"""Parley's ASGI handler: Django's, with what must happen before a request's body is read.

Django's handler reads the whole body (spooled to disk past FILE_UPLOAD_MAX_MEMORY_SIZE) before
any middleware or view runs, and checks its size only against a Content-Length: a client without
credentials could make the server take in any amount of data, chunked, before its 401. Here:

- a request to an endpoint that needs credentials (accounts.permissions) is authenticated from
  its headers alone, and refused (401, or 403 for an organization the user is not in) before a
  byte of its body is read;
- a Content-Length over PARLEY_MAX_BODY_BYTES is refused (413) before reading;
- a body, chunked too, is refused (413) as soon as it passes PARLEY_MAX_BODY_BYTES.

These answers close the connection, so the rest of such a body is not read at all."""

from __future__ import annotations

import io
import logging
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.http import HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import Resolver404, resolve

from accounts.authentication import PRINCIPAL_SCOPE_KEY, authenticate_bearer
from accounts.permissions import needs_credentials
from config.db import db_call
from config.errors import ApiError, ServerError, body_too_large, error_response
from config.middleware import request_id_for

logger = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _BodyTooLarge(Exception):
    pass


class ParleyASGIHandler(ASGIHandler):
    async def handle(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        try:
            # Only the headers: the body is not read yet.
            request: ASGIRequest | None = self.request_class(scope, io.BytesIO())
        except (UnicodeDecodeError, RequestDataTooBig):  # Django's own create_request answers these
            request = None
        refusal = await self._refusal_before_body(scope, request) if request is not None else None
        if refusal is None:
            try:
                await super().handle(scope, receive, send)
                return
            except _BodyTooLarge:
                refusal = body_too_large(settings.PARLEY_MAX_BODY_BYTES)
        response = error_response(refusal)
        response["X-Request-Id"] = request_id_for(request.headers if request is not None else {})
        if request is not None:
            response = _with_security_headers(request, response)
        # What the client still sends is not read: closing is how the server stops taking it.
        response["Connection"] = "close"
        await self.send_response(response, send)

    async def _refusal_before_body(self, scope: dict[str, Any], request: ASGIRequest) -> ApiError | None:
        if _needs_credentials(request):
            try:
                scope[PRINCIPAL_SCOPE_KEY] = await db_call(authenticate_bearer, request)
            except ApiError as refused:
                return refused
            except Exception:
                logger.exception("Authenticating %s %s failed", request.method, request.path)
                return ServerError("The server had an error while processing your request.")
        declared = request.META.get("CONTENT_LENGTH", "")
        if declared.isdigit() and int(declared) > settings.PARLEY_MAX_BODY_BYTES:
            return body_too_large(settings.PARLEY_MAX_BODY_BYTES)
        return None

    async def read_body(self, receive: Receive) -> Any:
        """Django's, stopped as soon as the body passes PARLEY_MAX_BODY_BYTES."""
        limit = settings.PARLEY_MAX_BODY_BYTES
        received = 0

        async def receive_within_limit() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise _BodyTooLarge
            return message

        return await super().read_body(receive_within_limit)


@cache
def _security_middleware() -> tuple[SecurityMiddleware, XFrameOptionsMiddleware]:
    # Built on first use: they read their settings when made.
    return (
        SecurityMiddleware(get_response=lambda request: None),
        XFrameOptionsMiddleware(get_response=lambda request: None),
    )


def _with_security_headers(request: ASGIRequest, response: HttpResponse) -> HttpResponse:
    """The headers every answer carries, from the middleware these early answers skip."""
    for middleware in _security_middleware():
        response = middleware.process_response(request, response)
    return response


def _needs_credentials(request: ASGIRequest) -> bool:
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return False
    return needs_credentials(match.url_name, request.method or "")
