"""The `webhook` backend: the tenant's own HTTP endpoint answers each turn.

Parley POSTs `{session_id, turn_id, agent, messages, tools, params}` as JSON, signed like Stripe's
webhooks: `Parley-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with the agent's
signing secret. The endpoint answers either JSON, `{"content": "...", "tool_calls": [...],
"usage": {...}}`, or an SSE stream of OpenAI `chat.completion.chunk`s ending with `[DONE]`.
Failures are retried (connection errors, 429, 5xx) only before any output.

Each call, its retries included, ends within PARLEY_WEBHOOK_TIMEOUT_SECONDS however the webhook
trickles its answer (504 `webhook_timeout`), reads at most MAX_JSON_ANSWER_BYTES of JSON or
MAX_EVENT_STREAM_BYTES of events, and closes its connection as soon as the turn stops listening
(a cancel), even while the webhook sends nothing but keep-alive newlines (agents.bounds)."""

from __future__ import annotations

import codecs
import json
import logging
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import httpx2
from django.conf import settings
from rest_framework import serializers

from agents.backends.base import (
    AgentCall,
    ChoiceDelta,
    StreamItem,
    UsageReport,
    public_config_without,
    validated_config_with_secret,
)
from agents.bounds import outbound_bounds
from agents.egress import iter_capped, outbound_client, read_capped
from agents.secrets import unseal
from agents.signing import sign
from agents.tokens import approx_prompt_tokens, approx_tokens
from config.errors import ApiError, GatewayTimeout, UpstreamError

logger = logging.getLogger(__name__)

MAX_JSON_ANSWER_BYTES = 1024 * 1024
# An event stream carries each token in a chunk of its own: more room, still a bound.
MAX_EVENT_STREAM_BYTES = 16 * 1024 * 1024
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0)
_ERROR_DETAIL_BYTES = 4096


class WebhookConfigSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=500)
    secret = serializers.CharField(required=False, min_length=16, max_length=500, write_only=True)
    timeout = serializers.FloatField(required=False, min_value=1, max_value=600, default=30)
    max_retries = serializers.IntegerField(required=False, min_value=0, max_value=4, default=2)


class WebhookBackend:
    def validate_config(self, config: dict[str, Any], *, previous: dict[str, Any]) -> dict[str, Any]:
        validated = validated_config_with_secret(
            WebhookConfigSerializer, config, previous=previous, write_only_field="secret", url_field="url"
        )
        if "secret" not in validated:
            raise serializers.ValidationError(
                {
                    "secret": [
                        serializers.ErrorDetail(
                            "A signing secret is required (at least 16 characters).", "required"
                        )
                    ]
                }
            )
        return validated

    def public_config(self, config: dict[str, Any]) -> dict[str, Any]:
        return public_config_without(config, "secret")

    def secrets(self, config: dict[str, Any]) -> list[str]:
        try:
            return [unseal(config.get("secret"))]
        except ValueError:  # nothing readable, so nothing that could have been sent
            return []

    def stream(self, call: AgentCall) -> Iterator[StreamItem]:
        config = call.backend_config
        params = {
            key: value for key, value in call.params.items() if key not in ("tools", "legacy_function_call")
        }
        body = json.dumps(
            {
                "session_id": call.context.get("session_id"),
                "turn_id": call.context.get("turn_id"),
                "agent": call.context.get("agent"),
                "messages": call.messages,
                "tools": call.params.get("tools") or [],
                "params": params,
            },
            separators=(",", ":"),
        ).encode()
        client = _client(float(config.get("timeout", 30)))
        retries = int(config.get("max_retries", 2))
        deadline = settings.PARLEY_WEBHOOK_TIMEOUT_SECONDS
        with outbound_bounds(seconds=deadline, stop=call.stop) as bounds:
            for attempt in range(retries + 1):
                started = False
                try:
                    headers = {
                        "Content-Type": "application/json",
                        "Accept": "application/json, text/event-stream",
                        "Parley-Signature": sign(unseal(config["secret"]), body),
                    }
                    with client.stream("POST", config["url"], content=body, headers=headers) as response:
                        if response.status_code >= 400:
                            raise _status_error(response)
                        if response.headers.get("content-type", "").startswith("text/event-stream"):
                            items = _from_event_stream(response)
                        else:
                            items = _from_json(read_capped(response, max_bytes=MAX_JSON_ANSWER_BYTES))
                        usage = None
                        for item in items:
                            started = True
                            if isinstance(item, UsageReport):
                                usage = item
                            else:
                                yield item
                        yield usage or UsageReport(approx_prompt_tokens(call.messages), approx_tokens(""))
                        return
                except _Retryable as exc:
                    if started or attempt == retries or not bounds.pause(_backoff(attempt)):
                        raise exc.error from exc
                    logger.warning("Webhook %s failed (%s); retried", config["url"], exc.error.code)
                except httpx2.TimeoutException as exc:
                    if bounds.expired:
                        raise GatewayTimeout(
                            f"The webhook did not finish its answer within {deadline:g} s.",
                            code="webhook_timeout",
                        ) from exc
                    if started or attempt == retries:
                        raise GatewayTimeout(
                            "The webhook did not answer in time.", code="webhook_timeout"
                        ) from exc
                except httpx2.TransportError as exc:
                    if bounds.stopped:
                        raise  # the turn no longer listens
                    if started or attempt == retries or not bounds.pause(_backoff(attempt)):
                        raise UpstreamError(
                            "The webhook could not be reached.", code="webhook_unreachable"
                        ) from exc


@lru_cache(maxsize=16)
def _client(timeout: float) -> httpx2.Client:
    """One client per timeout, shared by every turn of this process, so connections to a webhook
    are reused and none is left open after its turn."""
    return outbound_client(timeout=timeout)


def _backoff(attempt: int) -> float:
    return _BACKOFF_SECONDS[min(attempt, len(_BACKOFF_SECONDS) - 1)]


class _Retryable(Exception):
    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


def _status_error(response: httpx2.Response) -> Exception:
    start = bytearray()
    for chunk in response.iter_bytes():  # only the start of an error's body: it is quoted, not kept
        start += chunk
        if len(start) >= _ERROR_DETAIL_BYTES:
            break
    detail = start.decode(response.charset_encoding or "utf-8", errors="replace")[:500]
    if response.status_code == 429 or response.status_code >= 500:
        return _Retryable(
            UpstreamError(f"The webhook failed ({response.status_code}): {detail}", code="webhook_error")
        )
    return UpstreamError(
        f"The webhook refused the turn ({response.status_code}): {detail}", code="webhook_error"
    )


def _from_json(raw: bytes) -> Iterator[StreamItem]:
    try:
        answer = json.loads(raw)
    except ValueError:
        raise UpstreamError("The webhook's answer is not JSON.", code="webhook_bad_answer") from None
    if not isinstance(answer, dict):
        raise UpstreamError("The webhook's answer must be a JSON object.", code="webhook_bad_answer")
    content = answer.get("content")
    calls = answer.get("tool_calls") or []
    if content is not None and not isinstance(content, str):
        raise UpstreamError("The webhook's 'content' must be a string.", code="webhook_bad_answer")
    yield ChoiceDelta(
        index=0, delta={"role": "assistant", "content": "" if content is None and not calls else content}
    )
    for index, call in enumerate(calls):
        try:
            fragment = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {
                    "name": call["function"]["name"],
                    "arguments": call["function"].get("arguments", "{}"),
                },
            }
        except (KeyError, TypeError):
            raise UpstreamError(
                f"The webhook's tool_calls[{index}] is malformed.", code="webhook_bad_answer"
            ) from None
        yield ChoiceDelta(index=0, delta={"tool_calls": [fragment]})
    yield ChoiceDelta(index=0, delta={}, finish_reason="tool_calls" if calls else "stop")
    usage = answer.get("usage")
    if isinstance(usage, dict):
        yield UsageReport(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))
    else:
        yield UsageReport(0, approx_tokens(content or ""))


def _event_lines(response: httpx2.Response) -> Iterator[str]:
    """The lines of an event stream as they arrive, within MAX_EVENT_STREAM_BYTES in all (a line
    that never ends included)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    partial: list[str] = []
    for chunk in iter_capped(response, max_bytes=MAX_EVENT_STREAM_BYTES):
        *ended, rest = _LINE_BREAK.split(decoder.decode(chunk))
        if ended:
            # A CR LF split between two chunks reads as an extra empty line: events ignore it.
            yield "".join([*partial, ended[0]])
            yield from ended[1:]
            partial = []
        partial.append(rest)
    last = "".join(partial) + decoder.decode(b"", final=True)
    if last:
        yield last


def _from_event_stream(response: httpx2.Response) -> Iterator[StreamItem]:
    for line in _event_lines(response):
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            raise UpstreamError(
                "The webhook sent an event that is not JSON.", code="webhook_bad_answer"
            ) from None
        if isinstance(chunk, dict) and "error" in chunk:
            message = (
                (chunk["error"] or {}).get("message", "error")
                if isinstance(chunk["error"], dict)
                else "error"
            )
            raise UpstreamError(f"The webhook reported an error: {message}", code="webhook_error")
        for choice in chunk.get("choices") or []:
            yield ChoiceDelta(
                index=choice.get("index", 0),
                delta=choice.get("delta") or {},
                finish_reason=choice.get("finish_reason"),
                logprobs=choice.get("logprobs"),
            )
        if chunk.get("usage"):
            yield UsageReport(
                int(chunk["usage"].get("prompt_tokens", 0)), int(chunk["usage"].get("completion_tokens", 0))
            )
    raise UpstreamError("The webhook's event stream ended without [DONE].", code="webhook_bad_answer")
