"""Model fields of Parley's own."""

from __future__ import annotations

import json
from typing import Any

from django.db import models


def _json_list_text(value: list[Any]) -> str:
    # The text json.dumps(value) gives, made an item at a time.
    return "[" + ", ".join(json.dumps(item) for item in value) + "]"


class JSONListField(models.JSONField):
    """A JSONField for a list that may hold megabytes (a request's messages), encoded an item at a
    time: one json.dumps of the whole list holds the interpreter lock for tens of milliseconds
    (measured: ~28 ms for 4 MiB), and with it the web process's event loop and every other
    tenant's request; between items the lock is handed over. What is stored is the same."""

    def deconstruct(self) -> tuple[str, str, list[Any], dict[str, Any]]:
        # The column is a JSONField's: migrations see one, and have nothing to alter.
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.JSONField", args, kwargs

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if not isinstance(value, list) or self.encoder is not None:
            return super().get_db_prep_value(value, connection, prepared)
        if connection.vendor == "postgresql":
            from psycopg.types.json import Jsonb  # the PostgreSQL backend's own adapter

            return Jsonb(value, dumps=_json_list_text)
        return _json_list_text(value)
