import os
import secrets

from django.core.management.base import BaseCommand, CommandParser

from accounts.models import Membership, Organization, User
from accounts.services import api_key_create, organization_create

DEMO_SLUG = "demo"


class Command(BaseCommand):
    help = "Seed the demo organization, an admin user and an API key (the embedded quick start)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--admin", default=os.environ.get("PARLEY_DEMO_ADMIN", "admin"))

    def handle(self, *args, admin: str, **options) -> None:
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
        issued = api_key_create(organization=organization, name="demo", created_by=user)
        self.stdout.write(
            "\n".join(
                [
                    "Parley demo is ready.",
                    f"  organization: {organization.slug}",
                    f"  admin:        {user.username}"
                    + (f" / {password}" if password else " (existing user, password unchanged)"),
                    f"  API key:      {issued.secret}",
                    "",
                ]
            )
        )
