"""One error hierarchy for the whole API and the one place that renders it in OpenAI's envelope:
{"error": {"message", "type", "param", "code"}} plus, for validation errors, a FastAPI-style
"detail" list of {loc, msg, type}."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions

logger = logging.getLogger(__name__)


class ApiError(Exception):
    status = 400
    error_type = "invalid_request_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        detail: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.detail = detail
        self.headers = headers or {}

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }
        if self.detail is not None:
            body["detail"] = self.detail
        return body


class InvalidRequest(ApiError):
    default_code = "invalid_request"


class InvalidJson(ApiError):
    default_code = "invalid_json"


class AuthenticationFailed(ApiError):
    status = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(ApiError):
    status = 403
    error_type = "permission_error"
    default_code = "permission_denied"


class NotFound(ApiError):
    status = 404
    default_code = "not_found"


class MethodNotAllowed(ApiError):
    status = 405
    default_code = "method_not_allowed"


class Conflict(ApiError):
    status = 409
    default_code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    default_code = "request_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    default_code = "unsupported_media_type"


class RateLimited(ApiError):
    status = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class InsufficientQuota(RateLimited):
    """A quota used up for the period (tokens per day), as OpenAI names it."""

    error_type = "insufficient_quota"
    default_code = "insufficient_quota"


class ServerError(ApiError):
    status = 500
    error_type = "server_error"
    default_code = "internal_error"


class UpstreamError(ApiError):
    status = 502
    error_type = "server_error"
    default_code = "upstream_error"


class ServiceUnavailable(ApiError):
    status = 503
    error_type = "server_error"
    default_code = "service_unavailable"


class GatewayTimeout(ApiError):
    status = 504
    error_type = "timeout_error"
    default_code = "timeout"


# What the database driver raises when the server cannot be reached or a connection broke (and,
# with the connection pool, when no connection came within DB_POOL_TIMEOUT): worth a retry.
DATABASE_UNAVAILABLE_ERRORS = (OperationalError, InterfaceError)
# When a client is asked to try again after the database failed: about how long a restart takes.
DATABASE_RETRY_AFTER_SECONDS = 5


def database_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The database is unavailable at the moment; try again shortly.",
        code="database_unavailable",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def error_response(error: ApiError) -> JsonResponse:
    response = JsonResponse(error.payload(), status=error.status)
    for name, value in error.headers.items():
        response[name] = value
    return response


def body_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")


def validation_error(errors: Any) -> InvalidRequest:
    """Turn nested DRF validation errors into one envelope: the first error names the field in
    OpenAI's `param` form (messages[0].content); all of them are listed in `detail`."""
    return _invalid_values(list(_flatten(errors, ())))


def invalid_value(loc: tuple, msg: str, code: str = "invalid") -> InvalidRequest:
    """One invalid value of the body at `loc` (its keys and list indexes from the top), in the
    envelope validation_error gives: for checks made before any serializer runs."""
    return _invalid_values([(loc, msg, code)])


def _invalid_values(flat: list[tuple[tuple, str, str]]) -> InvalidRequest:
    detail = [{"loc": ["body", *loc], "msg": msg, "type": code} for loc, msg, code in flat]
    loc, msg, code = flat[0] if flat else ((), "Invalid request.", "invalid")
    param = _param_name(loc)
    message = f"Invalid value for '{param}': {msg}" if param else msg
    return InvalidRequest(message, param=param, code=_validation_code(code), detail=detail)


def _validation_code(drf_code: str) -> str:
    return {"required": "missing_required_parameter"}.get(drf_code, "invalid_value")


def _flatten(errors: Any, loc: tuple) -> Iterator[tuple[tuple, str, str]]:
    if isinstance(errors, dict):
        for key, value in errors.items():
            child = loc if key in ("non_field_errors", "__all__") else (*loc, key)
            yield from _flatten(value, child)
    elif isinstance(errors, list):
        if errors and all(isinstance(item, drf_exceptions.ErrorDetail | str) for item in errors):
            for item in errors:
                yield loc, str(item), getattr(item, "code", "invalid") or "invalid"
        else:
            for index, value in enumerate(errors):
                if value:
                    yield from _flatten(value, (*loc, index))
    else:
        yield loc, str(errors), getattr(errors, "code", "invalid") or "invalid"


def _param_name(loc: tuple) -> str | None:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or None


def api_error_for(exc: Exception) -> ApiError | None:
    """Map Django's and DRF's own exceptions onto the hierarchy; None for real faults."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, DATABASE_UNAVAILABLE_ERRORS):
        logger.warning("The database is unavailable: %s", exc.__class__.__name__)
        return database_unavailable()
    if isinstance(exc, RequestDataTooBig):
        return body_too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    if isinstance(exc, Http404 | drf_exceptions.NotFound):
        return NotFound("Not found.")
    if isinstance(exc, drf_exceptions.ValidationError):
        return validation_error(exc.detail)
    if isinstance(exc, drf_exceptions.ParseError):
        return InvalidJson(f"The body is not valid JSON: {exc.detail}")
    if isinstance(exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed):
        return AuthenticationFailed(str(exc.detail))
    if isinstance(exc, drf_exceptions.PermissionDenied):
        return PermissionDenied(str(exc.detail))
    if isinstance(exc, drf_exceptions.MethodNotAllowed):
        return MethodNotAllowed(str(exc.detail))
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):
        return UnsupportedMediaType(str(exc.detail))
    if isinstance(exc, drf_exceptions.Throttled):
        return RateLimited(str(exc.detail), headers={"Retry-After": str(int(exc.wait or 1))})
    if isinstance(exc, drf_exceptions.APIException):
        error = ApiError(str(exc.detail))
        error.status = exc.status_code
        return error
    return None


def drf_exception_handler(exc: Exception, context: dict) -> JsonResponse:
    error = api_error_for(exc)
    if error is None:
        logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
        error = ServerError("The server had an error while processing your request.")
    return error_response(error)
