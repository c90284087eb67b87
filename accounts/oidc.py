"""Sign-in through an identity provider with django-allauth: a generic OpenID Connect provider,
Google and GitHub, all configured from the environment (config/settings/base.py).

allauth checks `state` (it keys the login's stashed state, popped on the callback) and does PKCE
(S256, on in settings). Its generic OpenID Connect provider sends no `nonce`, so the provider
class below adds one: a random value per login, sent in the authorization request and required
back in the ID token, which binds that token to this login attempt in this browser session.

The adapters are where Parley's own rules meet allauth's flow (no signals): a first sign-in
creates the user and a personal organization they own; local sign-up forms stay closed.
"""

from __future__ import annotations

import secrets
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialLogin
from allauth.socialaccount.providers.oauth2.client import OAuth2Error
from allauth.socialaccount.providers.openid_connect.provider import OpenIDConnectProvider
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare

from accounts.models import User
from accounts.services.organizations import personal_organization_create

# The nonces of the logins this browser session has under way, by their state id.
_NONCES_SESSION_KEY = "parley_oidc_nonces"
# allauth keeps at most ten pending states per session; so do we.
_MAX_PENDING = 10


class NonceOpenIDConnectProvider(OpenIDConnectProvider):
    """allauth's generic OpenID Connect provider, plus the `nonce` of OpenID Connect Core 3.1.2.1."""

    # allauth finds a provider's URLs and views in its package: those of the stock provider.
    package = "allauth.socialaccount.providers.openid_connect"

    def redirect(
        self, request: HttpRequest, process: str, next_url: str | None = None, data: Any = None, **kwargs: Any
    ) -> HttpResponse:
        nonce = secrets.token_urlsafe(32)
        auth_params = kwargs.pop("auth_params", None)
        if auth_params is None:
            auth_params = self.get_auth_params()
        kwargs["auth_params"] = {**auth_params, "nonce": nonce}
        # Travels to stash_redirect_state with the rest of the login's state.
        kwargs["oidc_nonce"] = nonce
        return super().redirect(request, process, next_url, data, **kwargs)

    def stash_redirect_state(
        self,
        request: HttpRequest,
        process: str,
        next_url: str | None = None,
        data: Any = None,
        state_id: str | None = None,
        **kwargs: Any,
    ) -> str:
        state_id = super().stash_redirect_state(request, process, next_url, data, state_id=state_id, **kwargs)
        nonce = kwargs.get("oidc_nonce")
        if nonce:
            pending = dict(request.session.get(_NONCES_SESSION_KEY) or {})
            pending[state_id] = nonce
            request.session[_NONCES_SESSION_KEY] = dict(list(pending.items())[-_MAX_PENDING:])
        return state_id

    def sociallogin_from_response(self, request: HttpRequest, response: dict[str, Any]) -> SocialLogin:
        # Called on the callback once allauth has matched `state` and fetched the tokens, and
        # before anything is looked up or stored; an OAuth2Error here ends the login with
        # allauth's authentication error page.
        self._check_nonce(request, response)
        return super().sociallogin_from_response(request, response)

    def _check_nonce(self, request: HttpRequest, response: dict[str, Any]) -> None:
        pending = dict(request.session.get(_NONCES_SESSION_KEY) or {})
        expected = pending.pop(request.GET.get("state", ""), None)
        request.session[_NONCES_SESSION_KEY] = pending
        id_token = response.get("id_token") if isinstance(response, dict) else None
        received = id_token.get("nonce") if isinstance(id_token, dict) else None
        if not expected or not isinstance(received, str) or not constant_time_compare(expected, received):
            raise OAuth2Error("The ID token's nonce does not match this sign-in.")


class AccountAdapter(DefaultAccountAdapter):
    """Local accounts: created by the operator (admin, commands), never by a public form."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return False


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    """Sign-in through an identity provider. A first sign-in creates the user (when
    PARLEY_SOCIAL_SIGNUP allows) and their personal organization. allauth links a sign-in to an
    existing user only by an email address the provider says is verified (settings:
    SOCIALACCOUNT_EMAIL_AUTHENTICATION)."""

    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        # No user is made from an address the provider has not verified: the account would
        # carry someone else's address, and a later sign-in with that address verified would be
        # linked to it (account pre-hijacking).
        verified = any(address.verified for address in sociallogin.email_addresses)
        return bool(settings.PARLEY_SOCIAL_SIGNUP) and verified

    def save_user(self, request: HttpRequest, sociallogin: SocialLogin, form: Any = None) -> User:
        with transaction.atomic():
            user = super().save_user(request, sociallogin, form)
            personal_organization_create(user=user)
        return user
