from django.core.management.base import BaseCommand, CommandParser

from accounts.services.keys import api_key_create
from accounts.services.organizations import organization_get_or_create


class Command(BaseCommand):
    help = "Create an API key for an organization (created if missing) and print it alone on stdout."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organization", help="The organization's slug.")
        parser.add_argument("--name", default="cli", help="A name for the key.")

    def handle(self, *args, organization: str, name: str, **options) -> None:
        org, created = organization_get_or_create(slug=organization)
        if created:
            self.stderr.write(f"Created organization '{org.slug}'.")
        issued = api_key_create(organization=org, name=name)
        self.stdout.write(issued.secret)
