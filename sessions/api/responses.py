"""The calls sessions/api/views.py makes to shape its answers, each rendered by its output
serializer (shapes.py). Goes away when the views call the serializers themselves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sessions.api.shapes import SessionExportSerializer, SessionSerializer, TurnSerializer, chat_completion
from sessions.models import Message, Session, Turn

__all__ = ["chat_completion", "session_export", "session_payload", "turn_payload"]


def turn_payload(turn: Turn) -> dict[str, Any]:
    return TurnSerializer(turn).data


def session_payload(session: Session, messages: list[Message] | None = None) -> dict[str, Any]:
    return SessionSerializer(session, context={"messages": messages}).data


def session_export(
    session: Session, messages: list[Message], turns: list[Turn], *, exported_at: datetime
) -> dict[str, Any]:
    export = {"exported_at": exported_at, "session": session, "messages": messages, "turns": turns}
    return SessionExportSerializer(export).data
