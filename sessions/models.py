from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from config.fields import JSONListField
from sessions.ids import TURN_PREFIX, new_public_id


def _new_turn_id() -> str:
    return new_public_id(TURN_PREFIX)


class Session(models.Model):
    """A conversation. `external_id` is the id clients send as `session_id`: chosen by them
    (1-128 of [A-Za-z0-9._:-]) or generated (sess_...), unique within the organization."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="sessions"
    )
    external_id = models.CharField(max_length=128)
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    title = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # The request's `user` field: the end user of the caller's application.
    end_user = models.CharField(max_length=256, blank=True, db_index=True)
    message_count = models.PositiveIntegerField(default=0)
    turn_count = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "external_id"], name="session_unique_id_per_org"),
        ]
        indexes = [models.Index(fields=["organization", "-created", "-id"], name="session_org_newest")]

    def __str__(self) -> str:
        return self.external_id


class Turn(models.Model):
    """One request's run of an agent over a session. Claimed through the database (a
    conditional update, a lease, an attempt cap), never a lock held while the agent runs."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    id = models.CharField(primary_key=True, max_length=40, default=_new_turn_id, editable=False)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="turns")
    # Null for a stateless call (auto-creation of sessions switched off and no session_id).
    session = models.ForeignKey(
        Session, null=True, blank=True, on_delete=models.CASCADE, related_name="turns"
    )
    position = models.PositiveIntegerField(default=1)
    agent = models.ForeignKey("agents.Agent", null=True, on_delete=models.SET_NULL, related_name="turns")
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    user = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    model = models.CharField(max_length=200)
    params = models.JSONField(default=dict, blank=True)
    input_messages = JSONListField(default=list)
    fingerprint = models.CharField(max_length=64)
    # NULL, not "", for "no key": the partial unique constraint below must ignore it.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    output = models.JSONField(null=True, blank=True)
    usage = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(auto_now_add=True)
    # When the turn was last handed to the executor: recovery hands a queued turn that nobody
    # started over again only after a while (sessions/recovery.py), so a busy pool is not flooded.
    enqueued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    first_token_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "position"], name="turn_unique_position"),
            models.UniqueConstraint(
                fields=["session"], condition=Q(status="running"), name="turn_one_running_per_session"
            ),
            models.UniqueConstraint(
                fields=["organization", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="turn_unique_idempotency_key",
            ),
        ]
        indexes = [
            models.Index(fields=["session", "status", "position"], name="turn_session_queue"),
            # What recovery looks at: the few unfinished turns among all the finished ones.
            models.Index(
                fields=["status", "enqueued_at"],
                condition=Q(finished_at__isnull=True),
                name="turn_unfinished",
            ),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class TurnEventBatch(models.Model):
    """A run of a turn's stream events, numbered `first_seq`..`last_seq`: the record that a
    reconnecting client replays. The runner writes them coalesced, a batch every few tens of
    milliseconds, not a row per token."""

    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="event_batches")
    first_seq = models.PositiveIntegerField()
    last_seq = models.PositiveIntegerField()
    # JSON text: [{"seq": n, "kind": "chunk" | "usage" | "tool_step" | "done" | "error" | "restart",
    # "data": the SSE data text}, ...]. Text, not jsonb, whose reordered keys would make a replay
    # differ from the live stream: these are the bytes every listener gets.
    events = models.TextField()
    # The attempt (Turn.attempts) that wrote them; 0 when none ran (a queued turn's cancel).
    attempt = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["turn", "first_seq"], name="turn_event_batch_unique_start")
        ]
        indexes = [models.Index(fields=["turn", "last_seq"], name="turn_event_batch_lookup")]

    def __str__(self) -> str:
        return f"{self.turn_id} events {self.first_seq}-{self.last_seq}"


class Message(models.Model):
    """One message of a session's transcript; `seq` numbers them from 1 without gaps."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveIntegerField()
    role = models.CharField(max_length=16)
    content = models.JSONField(null=True, blank=True)  # a string or a list of content parts
    name = models.CharField(max_length=128, blank=True)
    tool_calls = models.JSONField(null=True, blank=True)
    tool_call_id = models.CharField(max_length=128, blank=True)
    turn = models.ForeignKey(Turn, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "seq"], name="message_unique_seq")]
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"{self.session_id}#{self.seq} {self.role}"

    def as_openai(self) -> dict:
        """The message in OpenAI's request shape, as an agent receives it."""
        message: dict = {"role": self.role, "content": self.content}
        if self.name:
            message["name"] = self.name
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        if self.tool_call_id:
            message["tool_call_id"] = self.tool_call_id
        return message


class UsageRecord(models.Model):
    """What one turn used, kept when its session is deleted (GET /v1/usage)."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="usage")
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    user = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    agent_slug = models.CharField(max_length=64)
    session = models.ForeignKey(Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    turn = models.OneToOneField(
        Turn, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_record"
    )
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "created"], name="usage_org_created")]

    def __str__(self) -> str:
        return f"{self.organization_id} {self.agent_slug} {self.prompt_tokens}+{self.completion_tokens}"
