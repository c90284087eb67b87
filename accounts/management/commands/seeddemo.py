import os
import secrets

from django.core.management.base import BaseCommand, CommandParser

from accounts.models import Membership, Organization, User
from accounts.services.keys import api_key_replace
from accounts.services.organizations import organization_create

DEMO_SLUG = "demo"
# The demo organization's keys of this name are the demo key: each run revokes the earlier ones.
DEMO_KEY_NAME = "demo"


class Command(BaseCommand):
    help = (
        "Seed the demo organization, an admin user and the demo API key (the embedded quick start). "
        "Each run mints a new demo key and revokes the one an earlier run printed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--admin", default=os.environ.get("PARLEY_DEMO_ADMIN", "admin"))
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000", help="The server's address, for the printed example."
        )

    def handle(self, *args, admin: str, url: str, **options) -> None:
        organization = Organization.objects.filter(slug=DEMO_SLUG).first()
        password = None
        user = User.objects.filter(username=admin).first()
        if user is None:
            password = os.environ.get("PARLEY_DEMO_PASSWORD") or secrets.token_urlsafe(12)
            user = User.objects.create_superuser(username=admin, email="", password=password)
        if organization is None:
            organization = organization_create(slug=DEMO_SLUG, name="Demo", owner=user)
        else:
            Membership.objects.get_or_create(
                user=user, organization=organization, defaults={"role": Membership.Role.OWNER}
            )
        issued = api_key_replace(organization=organization, name=DEMO_KEY_NAME, created_by=user)
        url = url.rstrip("/")
        body = '{"model":"echo","messages":[{"role":"user","content":"hi"}]}'
        self.stdout.write(
            "\n".join(
                [
                    "Parley demo is ready.",
                    f"  organization: {organization.slug}",
                    f"  admin:        {user.username}"
                    + (f" / {password}" if password else " (existing user, password unchanged)"),
                    f"  API key:      {issued.secret}",
                    "",
                    "Try it:",
                    f"  curl -H 'Authorization: Bearer {issued.secret}' -H 'Content-Type: application/json' "
                    f"-d '{body}' {url}/v1/chat/completions",
                    "",
                    f"The admin signs in at {url}/admin/. The key has every scope: keep it private.",
                    "A new demo key: run this again (make run does); the key printed before is revoked.",
                    f"A new admin password: .venv/bin/python manage.py changepassword {user.username}",
                    "",
                ]
            )
        )
