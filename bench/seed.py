"""What the benchmark puts in Parley's database, through Parley's own services, run with Parley's
Python and the stack's environment (bench/run.py does that):

    python bench/seed.py tenant --upstream http://127.0.0.1:8400/v1 --slow-model "fake:chunks=20,delay=0.5"
        an organization with an API key and two `openai` agents on the fake upstream, "bench"
        (model "fake") and "bench-slow", each seeing the last 40 messages of a session (the
        agents' history window); prints {"organization", "key"} as JSON.
    python bench/seed.py sessions --organization SLUG --messages 10 1000 10000
        a session of each length, its messages written directly (bulk inserts, as a long
        conversation would have left them); prints {"10": "session id", ...} as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
django.setup()

from accounts.models import Organization  # noqa: E402
from accounts.services import api_key_create, organization_create  # noqa: E402
from agents.models import Agent  # noqa: E402
from agents.services import agent_create  # noqa: E402
from sessions.models import Message, Session  # noqa: E402

AGENT = "bench"
SLOW_AGENT = "bench-slow"
HISTORY_WINDOW = 40


def tenant(upstream: str, slow_model: str) -> dict[str, str]:
    organization = organization_create(slug=f"bench-{uuid.uuid4().hex[:8]}")
    key = api_key_create(organization=organization, name="bench").secret
    for slug, model in ((AGENT, "fake"), (SLOW_AGENT, slow_model)):
        agent_create(
            organization=organization,
            slug=slug,
            backend="openai",
            backend_config={"base_url": upstream, "model": model, "api_key": "sk-bench-upstream"},
            # As a deployment with long sessions sets it: the agent sees the last HISTORY_WINDOW
            # messages, so that a turn on a session of 10,000 messages sends the upstream what a
            # turn on a short one does (without it, all 10,000 go upstream every turn).
            history_max_messages=HISTORY_WINDOW,
        )
    return {"organization": organization.slug, "key": key}


def sessions(organization_slug: str, lengths: list[int]) -> dict[str, str]:
    organization = Organization.objects.get(slug=organization_slug)
    agent = Agent.objects.get(organization=organization, slug=AGENT)
    made: dict[str, str] = {}
    for length in lengths:
        session = Session.objects.create(
            organization=organization,
            external_id=f"long-{length}-{uuid.uuid4().hex[:8]}",
            agent=agent,
            message_count=length,
            turn_count=length // 2,
        )
        Message.objects.bulk_create(
            (
                Message(
                    session=session,
                    seq=seq,
                    role="user" if seq % 2 else "assistant",
                    content=f"message {seq} of a long conversation about the benchmark",
                )
                for seq in range(1, length + 1)
            ),
            batch_size=2000,
        )
        made[str(length)] = session.external_id
    return made


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    tenant_command = commands.add_parser("tenant")
    tenant_command.add_argument("--upstream", required=True)
    tenant_command.add_argument("--slow-model", required=True)
    sessions_command = commands.add_parser("sessions")
    sessions_command.add_argument("--organization", required=True)
    sessions_command.add_argument("--messages", type=int, nargs="+", required=True)
    arguments = parser.parse_args()
    if arguments.command == "tenant":
        print(json.dumps(tenant(arguments.upstream, arguments.slow_model)))
    else:
        print(json.dumps(sessions(arguments.organization, arguments.messages)))


if __name__ == "__main__":
    main()
