"""A turn's stream. What the agent yields becomes OpenAI `chat.completion.chunk`s, numbered
events that are stored in coalesced batches (the record a reconnecting client replays) and
published through the channel layer (only a wake-up for live listeners)."""

from __future__ import annotations

import contextlib
import contextvars
import json
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from django.db import transaction
from django.db.models import Min

from agents.backends.base import ChoiceDelta, StreamItem, UsageReport
from sessions.events import RESTART, TurnEvent, publish_turn_events, turn_event
from sessions.models import Turn, TurnEventBatch

SYSTEM_FINGERPRINT = "fp_parley_0_1"
# A batch is written at the latest this long after its first event, or when it is this big.
FLUSH_SECONDS = 0.05
BATCH_MAX_EVENTS = 256


def completion_id(turn: Turn) -> str:
    return "chatcmpl-" + turn.id.removeprefix("turn_")


def chunk_base(turn: Turn, session_external_id: str | None) -> dict[str, Any]:
    """What every chunk of a turn shares."""
    return {
        "id": completion_id(turn),
        "object": "chat.completion.chunk",
        "created": int(turn.queued_at.timestamp()),
        "model": turn.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "session_id": session_external_id,
        "turn_id": turn.id,
    }


def delta_chunk(base: dict[str, Any], item: ChoiceDelta, *, legacy_functions: bool) -> dict[str, Any]:
    delta, finish_reason = item.delta, item.finish_reason
    if legacy_functions:  # clients of the deprecated `functions` get `function_call` deltas
        delta = dict(delta)
        calls = delta.pop("tool_calls", None)
        if calls:
            delta["function_call"] = {k: v for k, v in calls[0].get("function", {}).items() if v is not None}
        if finish_reason == "tool_calls":
            finish_reason = "function_call"
    choice = {"index": item.index, "delta": delta, "logprobs": item.logprobs, "finish_reason": finish_reason}
    return {**base, "choices": [choice]}


def tool_step_chunk(base: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    """A server-side tool step for clients that asked for them (stream_options.include_tool_steps):
    an ordinary chunk with an empty delta, so that OpenAI clients pass over it, and the step in
    the extension field `tool_step`."""
    return {
        **base,
        "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": None}],
        "tool_step": step,
    }


def usage_payload(usage: UsageReport | None) -> dict[str, Any]:
    prompt = usage.prompt_tokens if usage else 0
    completion = usage.completion_tokens if usage else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def usage_with_details(usage: dict[str, Any]) -> dict[str, Any]:
    """Usage as OpenAI shows it, with the breakdowns Parley has nothing to report in."""
    return {
        **usage,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def usage_chunk(base: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
    return {**base, "choices": [], "usage": usage_with_details(usage)}


class ReplyAccumulator:
    """Builds the complete answer (every choice's message) from the stream's deltas, the way the
    OpenAI SDK assembles a stream: strings concatenated, tool calls joined by their index."""

    def __init__(self) -> None:
        self._choices: dict[int, dict[str, Any]] = {}
        self.usage: UsageReport | None = None
        self.started_output = False

    def add(self, item: StreamItem) -> None:
        if isinstance(item, UsageReport):
            self.usage = item
            return
        choice = self._choices.setdefault(
            item.index,
            {"content": None, "refusal": None, "calls": {}, "finish_reason": None, "logprobs": None},
        )
        delta = item.delta
        for key in ("content", "refusal"):
            if delta.get(key):
                choice[key] = (choice[key] or "") + delta[key]
                self.started_output = True
            elif delta.get(key) == "" and choice[key] is None:
                choice[key] = ""
        for fragment in delta.get("tool_calls") or []:
            self.started_output = True
            call = choice["calls"].setdefault(
                fragment.get("index", 0),
                {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
            )
            call["id"] += fragment.get("id") or ""
            function = fragment.get("function") or {}
            call["function"]["name"] += function.get("name") or ""
            call["function"]["arguments"] += function.get("arguments") or ""
        if item.logprobs:
            if choice["logprobs"] is None:
                choice["logprobs"] = {"content": [], "refusal": None}
            choice["logprobs"]["content"] += item.logprobs.get("content") or []
        if item.finish_reason:
            choice["finish_reason"] = item.finish_reason

    def choices(self, *, complete_calls_only: bool = False) -> list[dict[str, Any]]:
        result = []
        for index in sorted(self._choices):
            choice = self._choices[index]
            message: dict[str, Any] = {"role": "assistant", "content": choice["content"]}
            if choice["refusal"]:
                message["refusal"] = choice["refusal"]
            if choice["calls"] and not complete_calls_only:
                message["tool_calls"] = [choice["calls"][key] for key in sorted(choice["calls"])]
            result.append(
                {
                    "index": index,
                    "message": message,
                    "finish_reason": choice["finish_reason"] or "stop",
                    "logprobs": choice["logprobs"],
                }
            )
        return result


class EventWriter:
    """Numbers a turn's events and writes them in batches: mid-stream through `flush_if_due`,
    and the last batch inside the transaction that finishes the turn (`take_pending`), so that
    a finished turn always has its terminal event stored."""

    def __init__(self, turn: Turn) -> None:
        self.turn_id = turn.id
        self.attempt = turn.attempts
        # A turn taken over after its lease expired numbers on after what was already stored.
        self.seq = next_event_seq(turn.id) - 1
        self._pending: list[TurnEvent] = []
        self._first_pending_at = 0.0
        # Set when a batch was refused: the turn is no longer this attempt's to write.
        self.superseded = False

    def add(self, kind: str, data: dict[str, Any] | None = None) -> None:
        self.seq += 1
        if not self._pending:
            self._first_pending_at = time.monotonic()
        self._pending.append(turn_event(self.seq, kind, data))

    def flush_if_due(self) -> None:
        if self._pending and (
            len(self._pending) >= BATCH_MAX_EVENTS
            or time.monotonic() - self._first_pending_at >= FLUSH_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        """Write what is pending now, if the turn is still this attempt's (else drop it)."""
        events = self.take_pending()
        if store_events_fenced(self.turn_id, events, attempt=self.attempt):
            publish_turn_events(self.turn_id, events)
        elif events:
            self.superseded = True

    def take_pending(self) -> list[TurnEvent]:
        events, self._pending = self._pending, []
        return events

    def put_back(self, events: list[TurnEvent]) -> None:
        """Return taken events, unwritten, to be written before any added later."""
        self._pending = events + self._pending


def store_events(turn_id: str, events: list[TurnEvent], *, attempt: int) -> None:
    """Store a batch. Call where the turn's ownership is settled: inside the transaction whose
    fenced update finished the turn, or through `store_events_fenced`."""
    if events:
        TurnEventBatch.objects.create(
            turn_id=turn_id,
            first_seq=events[0]["seq"],
            last_seq=events[-1]["seq"],
            events=json.dumps(events, separators=(",", ":")),
            attempt=attempt,
        )


def stored_events(turn_id: str, from_seq: int) -> list[TurnEvent]:
    """The turn's stored events from `from_seq` on, in order, exactly as they were made."""
    batches = TurnEventBatch.objects.filter(turn_id=turn_id, last_seq__gte=from_seq).order_by("first_seq")
    return _events_of(batches, from_seq)


def _events_of(batches: Iterable[TurnEventBatch], from_seq: int) -> list[TurnEvent]:
    return [event for batch in batches for event in json.loads(batch.events) if event["seq"] >= from_seq]


# Batches (of up to BATCH_MAX_EVENTS events each) a listener reads from the store at once.
STORE_PAGE_BATCHES = 4


def stored_events_page(turn_id: str, from_seq: int, *, skip_superseded: bool) -> tuple[list[TurnEvent], bool]:
    """The stored events from `from_seq` on, a page of STORE_PAGE_BATCHES batches at a time (a
    listener far behind, its client slow, holds one page, not the whole turn), and whether more
    are stored. With `skip_superseded` (a listener that holds none of the turn's events) the
    page starts at the latest restart marker, if it is further on: what comes before it is
    superseded, and a page that stopped short of it would hand the listener a lost attempt's
    events."""
    if skip_superseded:
        from_seq = max(from_seq, _latest_restart_seq(turn_id))
    batches = list(
        TurnEventBatch.objects.filter(turn_id=turn_id, last_seq__gte=from_seq).order_by("first_seq")[
            : STORE_PAGE_BATCHES + 1
        ]
    )
    return _events_of(batches[:STORE_PAGE_BATCHES], from_seq), len(batches) > STORE_PAGE_BATCHES


def _latest_restart_seq(turn_id: str) -> int:
    """Where the latest restart marker is, 0 if none: a takeover's first batch holds it."""
    takeovers_first_batches = (
        TurnEventBatch.objects.filter(turn_id=turn_id, attempt__gt=1)
        .values("attempt")
        .annotate(start=Min("first_seq"))
        .values_list("start", flat=True)
    )
    batches = (
        TurnEventBatch.objects.filter(turn_id=turn_id, first_seq__in=list(takeovers_first_batches))
        .order_by("-first_seq")
        .values_list("first_seq", "events")
    )
    return next((first for first, events in batches if json.loads(events)[0]["kind"] == RESTART), 0)


def store_events_fenced(turn_id: str, events: list[TurnEvent], *, attempt: int) -> bool:
    """Store a runner's batch only while the turn is still its attempt's and unfinished (running,
    or cancelled and not yet wound up by it); False when refused. The turn's row stays locked
    until the batch is in, so a takeover's claim waits for it and numbers on after it."""
    if not events:
        return True
    with transaction.atomic():
        owned = (
            Turn.objects.select_for_update()
            .filter(
                pk=turn_id,
                attempts=attempt,
                status__in=[Turn.Status.RUNNING, Turn.Status.CANCELLED],
                finished_at__isnull=True,
            )
            .exists()
        )
        if owned:
            store_events(turn_id, events, attempt=attempt)
    return owned


def next_event_seq(turn_id: str) -> int:
    last = (
        TurnEventBatch.objects.filter(turn_id=turn_id)
        .order_by("-last_seq")
        .values_list("last_seq", flat=True)
    )
    return (last.first() or 0) + 1


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def pump(
    items: Iterator[StreamItem], *, tick_seconds: float, stop: threading.Event
) -> Iterator[StreamItem | None]:
    """Iterate a backend's stream on a thread of its own, yielding None every `tick_seconds`
    when it has nothing new, so that the runner can flush, renew its lease and notice a
    cancellation while the agent is silent."""
    inbox: queue.Queue = queue.Queue(maxsize=BATCH_MAX_EVENTS * 4)

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                inbox.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # handed to the runner, which records it
            put(_Failure(exc))
        finally:
            # An answer the runner no longer wants ends here, on this thread, closing its
            # connection now rather than whenever the generator is collected.
            close = getattr(items, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):  # nobody listens to this answer any more
                    close()

    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(produce,), daemon=True, name="parley-agent").start()
    try:
        while True:
            try:
                item = inbox.get(timeout=tick_seconds)
            except queue.Empty:
                yield None
                continue
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
