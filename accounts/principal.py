"""Who is calling: the principal that authentication (accounts/authentication.py) hands to the
views, the permission check and the services. Its own module, importing only the models, so that
every layer can name it without importing authentication."""

from __future__ import annotations

from dataclasses import dataclass

from accounts.models import ApiKey, Organization, User


@dataclass(frozen=True)
class Principal:
    """Who is calling and on behalf of which organization: an API key (with its scopes) or a
    user signed in with a JWT (with their role in the organization)."""

    organization: Organization
    api_key: ApiKey | None = None
    user: User | None = None
    role: str | None = None  # the user's membership role; None for an API key

    # DRF asks request.user this.
    is_authenticated = True
