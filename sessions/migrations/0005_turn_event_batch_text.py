"""A turn's stream events are kept as the text every listener gets, not as jsonb (which reorders
keys, so a replay differed from the live stream): each event's `data` is its SSE data text."""

import json

from django.db import migrations, models


def _as_text(data, kind):
    return "[DONE]" if kind == "done" else json.dumps(data, separators=(",", ":"))


def data_to_text(apps, schema_editor):
    # Events stored before hold their data as JSON values; the order jsonb gave their keys is
    # all that is left of them, and from now on it is the order every listener gets.
    TurnEventBatch = apps.get_model("conversations", "TurnEventBatch")
    for batch in TurnEventBatch.objects.only("pk", "events").iterator():
        events = json.loads(batch.events)
        if all(isinstance(event["data"], str) for event in events):
            continue
        for event in events:
            if not isinstance(event["data"], str):
                event["data"] = _as_text(event["data"], event["kind"])
        batch.events = json.dumps(events, separators=(",", ":"))
        batch.save(update_fields=["events"])


def data_to_json(apps, schema_editor):
    TurnEventBatch = apps.get_model("conversations", "TurnEventBatch")
    for batch in TurnEventBatch.objects.only("pk", "events").iterator():
        events = json.loads(batch.events)
        for event in events:
            event["data"] = None if event["kind"] == "done" else json.loads(event["data"])
        batch.events = json.dumps(events)
        batch.save(update_fields=["events"])


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0004_turn_recovery"),
    ]

    operations = [
        migrations.AlterField(
            model_name="turneventbatch",
            name="events",
            field=models.TextField(),
        ),
        migrations.RunPython(data_to_text, data_to_json),
    ]
