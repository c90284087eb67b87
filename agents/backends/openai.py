"""The `openai` backend: any OpenAI-compatible upstream (OpenAI, vLLM, Ollama, llama.cpp,
LocalAI, OpenRouter...), called with the official SDK through the egress guard.

Deltas are relayed as the upstream sends them: tool-call fragments keep their `index`, `id` and
`function.name`. Connection errors, 429 and 5xx are retried with backoff, but only before the
first chunk: after that a failure ends the stream with an error event. Each call, its retries
included, ends within PARLEY_UPSTREAM_TIMEOUT_SECONDS (504 `upstream_timeout`), and closes its
connection as soon as the turn stops listening (agents.bounds)."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import openai
from django.conf import settings
from openai.types.chat import ChatCompletion, ChatCompletionChunk
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
from agents.egress import outbound_client
from agents.secrets import KEY_VARIABLE_NOT_OFFERED, key_variable_offered, read_key_variable, unseal
from agents.tokens import CHARS_PER_TOKEN, approx_prompt_tokens
from config.errors import ApiError, GatewayTimeout, RateLimited, UpstreamError

logger = logging.getLogger(__name__)

# Request parameters passed on to the upstream as they came.
FORWARDED_PARAMS = (
    "temperature",
    "top_p",
    "n",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "seed",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
)
# Request fields that only Parley decides.
RESERVED_PARAMS = {"model", "messages", "stream", "stream_options"}
_BACKOFF_BASE_SECONDS = 0.5
_BACKOFF_MAX_SECONDS = 8.0
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Sent without a key: local servers (Ollama, llama.cpp) take any key, the SDK needs one.
PLACEHOLDER_KEY = "none"


class UpstreamRefused(ApiError):
    """The upstream refused the request (4xx): the client's request is what is wrong."""

    default_code = "upstream_invalid_request"


class OpenAIConfigSerializer(serializers.Serializer):
    base_url = serializers.URLField(max_length=500)
    model = serializers.CharField(max_length=200)
    api_key = serializers.CharField(required=False, allow_blank=False, max_length=500, write_only=True)
    api_key_env = serializers.RegexField(_ENV_NAME, required=False, max_length=100)
    timeout = serializers.FloatField(required=False, min_value=1, max_value=600, default=60)
    max_retries = serializers.IntegerField(required=False, min_value=0, max_value=10, default=2)
    # Sent with every request (e.g. {"top_k": 40} for vLLM); request parameters win.
    extra_params = serializers.DictField(required=False)

    def validate_api_key_env(self, value: str) -> str:
        if not key_variable_offered(value):
            raise serializers.ValidationError(f"{value} {KEY_VARIABLE_NOT_OFFERED}.")
        return value

    def validate_extra_params(self, value: dict) -> dict:
        reserved = sorted(set(value) & RESERVED_PARAMS)
        if reserved:
            raise serializers.ValidationError(f"Parley sets these itself: {', '.join(reserved)}.")
        return value

    def validate(self, attrs: dict) -> dict:
        if attrs.get("api_key") and attrs.get("api_key_env"):
            raise serializers.ValidationError(
                {"api_key_env": ["Give either api_key or api_key_env, not both."]}
            )
        return attrs


class OpenAIBackend:
    def validate_config(self, config: dict[str, Any], *, previous: dict[str, Any]) -> dict[str, Any]:
        validated = validated_config_with_secret(
            OpenAIConfigSerializer,
            config,
            previous=previous,
            write_only_field="api_key",
            url_field="base_url",
        )
        if "api_key_env" in validated:  # the key comes from the environment now
            validated.pop("api_key", None)
        return validated

    def public_config(self, config: dict[str, Any]) -> dict[str, Any]:
        return public_config_without(config, "api_key")

    def secrets(self, config: dict[str, Any]) -> list[str]:
        try:
            key = _api_key(config)
        except (UpstreamError, ValueError):  # no key that could have been sent
            return []
        return [key] if key != PLACEHOLDER_KEY else []

    def stream(self, call: AgentCall) -> Iterator[StreamItem]:
        config = call.backend_config
        client = _client(config["base_url"], _api_key(config), float(config.get("timeout", 60)))
        request = _upstream_request(call, config)
        retries = int(config.get("max_retries", 2))
        deadline = settings.PARLEY_UPSTREAM_TIMEOUT_SECONDS
        with outbound_bounds(seconds=deadline, stop=call.stop) as bounds:
            for attempt in range(retries + 1):
                started = False
                try:
                    usage, produced, finished = None, 0, False
                    for chunk in _completion_chunks(client, request):
                        started = True
                        for choice in chunk.choices:
                            produced += len(choice.delta.content or "")
                            finished = finished or choice.finish_reason is not None
                            yield ChoiceDelta(
                                index=choice.index,
                                delta=choice.delta.model_dump(exclude_none=True),
                                finish_reason=choice.finish_reason,
                                logprobs=choice.logprobs.model_dump(exclude_none=True)
                                if choice.logprobs
                                else None,
                            )
                        if chunk.usage:
                            usage = UsageReport(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    if not finished:
                        # The connection closed cleanly but the answer never ended: it was cut off.
                        raise UpstreamError(
                            "The upstream model's answer broke off.", code="upstream_incomplete"
                        )
                    yield usage or UsageReport(
                        approx_prompt_tokens(call.messages, call.params.get("tools")),
                        math.ceil(produced / CHARS_PER_TOKEN),
                    )
                    return
                except openai.APIError as exc:
                    if bounds.stopped:
                        raise  # the turn no longer listens
                    if bounds.expired:
                        raise GatewayTimeout(
                            f"The upstream model did not finish its answer within {deadline:g} s.",
                            code="upstream_timeout",
                        ) from exc
                    error, retryable, wait = _mapped(exc)
                    delay = wait if wait is not None else _backoff(attempt)
                    if started or not retryable or attempt == retries or not bounds.pause(delay):
                        raise error from exc
                    logger.warning(
                        "Upstream %s failed (%s); retried %d after %.1f s",
                        config["base_url"],
                        error.code,
                        attempt + 1,
                        delay,
                    )


def _api_key(config: dict[str, Any]) -> str:
    """The agent's key. An `api_key_env` is checked again here, not only when the agent was
    saved: an agent stored before the operator's offer existed must not reach other variables."""
    name = config.get("api_key_env")
    if name:
        try:
            key = read_key_variable(name)
        except ValueError as refused:
            raise UpstreamError(
                f"This agent's api_key_env {refused}; an admin of the organization must change it.",
                code="upstream_key_not_offered",
            ) from None
        if key is None:
            raise UpstreamError(
                f"The environment variable {name} with this agent's API key is not set.",
                code="upstream_key_missing",
            )
        return key
    if config.get("api_key"):
        return unseal(config["api_key"])
    return PLACEHOLDER_KEY


@lru_cache(maxsize=128)
def _client(base_url: str, api_key: str, timeout: float) -> openai.OpenAI:
    """One client per upstream, so connections are reused across turns."""
    return openai.OpenAI(
        base_url=base_url,
        api_key=api_key,
        timeout=timeout,
        max_retries=0,  # retried here, and only before the first chunk
        http_client=outbound_client(timeout=timeout),
    )


class _ReusableStream(openai.Stream[ChatCompletionChunk]):
    """The SDK's stream of chunks, reading the body to its end when `[DONE]` comes: the SDK's sync
    stream then closes the response unread, which closes the connection (the async one drains
    it, as HTTP/1.1 needs to reuse it), so every turn opened a new connection to the upstream."""

    def _iter_events(self) -> Iterator[Any]:
        events = super()._iter_events()
        for event in events:
            if event.data.startswith("[DONE]"):
                for _after in events:  # the end of the body: nothing more, as a rule
                    pass
            yield event


def _completion_chunks(client: openai.OpenAI, request: dict[str, Any]) -> openai.Stream[ChatCompletionChunk]:
    """client.chat.completions.create(**request, stream=True), posted as the SDK's own `create`
    posts it, but for the SDK's walk over the parameters against their typed definitions
    (`maybe_transform`): the request is plain JSON already, validated by Parley, and that walk was
    more than half of the agent thread's time in a turn (py-spy, bench/), growing with the history."""
    return client.post(
        "/chat/completions",
        body=request,
        cast_to=ChatCompletion,
        options={"security": {"bearer_auth": True}},
        stream=True,
        stream_cls=_ReusableStream,
    )


def _upstream_request(call: AgentCall, config: dict[str, Any]) -> dict[str, Any]:
    forwarded = {key: call.params[key] for key in FORWARDED_PARAMS if key in call.params}
    request = {
        "model": config["model"],
        "messages": call.messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        **forwarded,
    }
    if config.get("extra_params"):  # merged into the body, as the SDK merges `extra_body`
        extra = {key: v for key, v in config["extra_params"].items() if key not in forwarded}
        request = {**request, **extra}
    return request


def _mapped(exc: openai.APIError) -> tuple[ApiError, bool, float | None]:
    """The envelope for an upstream failure, whether it may be retried, and how long to wait."""
    if isinstance(exc, openai.APITimeoutError):
        return (
            GatewayTimeout("The upstream model did not answer in time.", code="upstream_timeout"),
            True,
            None,
        )
    if isinstance(exc, openai.APIConnectionError):
        return (
            UpstreamError("The upstream model could not be reached.", code="upstream_unreachable"),
            True,
            None,
        )
    if isinstance(exc, openai.APIStatusError):
        message = _upstream_message(exc)
        if exc.status_code == 429:
            wait = _retry_after(exc)
            return RateLimited(f"The upstream model is rate limiting: {message}"), True, wait
        if exc.status_code >= 500:
            return UpstreamError(f"The upstream model failed ({exc.status_code}): {message}"), True, None
        return UpstreamRefused(f"The upstream model refused the request: {message}"), False, None
    return UpstreamError(f"The upstream model sent a broken answer ({type(exc).__name__})."), False, None


def _upstream_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
    return exc.message


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return min(float(value), _BACKOFF_MAX_SECONDS) if value is not None else None
    except ValueError:
        return None


def _backoff(attempt: int) -> float:
    return min(_BACKOFF_MAX_SECONDS, _BACKOFF_BASE_SECONDS * 2**attempt) * (0.5 + random.random() / 2)  # noqa: S311
