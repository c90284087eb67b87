"""Signing in through an OpenID Connect provider (django-allauth), end to end against a real
provider on loopback (tests/oidc: the npm package oidc-provider), with an HTTP client as the
browser: a first login creates the user and a personal organization; the session buys a JWT pair
for the API; verified emails link to existing users, unverified ones don't; `state` and `nonce`
are checked."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount

from accounts.models import Membership, Organization, User
from sessions.models import Session
from tests.conftest import live_password_hash
from tests.oidc_provider import PROVIDER_ID, OidcProvider
from tests.pages import press_the_button, shown_pair

MAX_REDIRECTS = 20


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30, follow_redirects=False) as client:
        yield client


def fresh_email() -> str:
    return f"person-{uuid.uuid4().hex[:12]}@example.test"


def with_query(url: str, **changes: str | None) -> str:
    """The URL with query parameters replaced (None: removed)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    for name, value in changes.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def start_login(browser: httpx.Client, stack) -> str:
    """Press "continue" on Parley's sign-in page for the provider; the authorization URL."""
    login_url = f"{stack.url}/accounts/oidc/{PROVIDER_ID}/login/"
    page = browser.get(login_url)
    assert page.status_code == 200, page.text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = browser.post(login_url, data={"csrfmiddlewaretoken": csrf})
    assert response.status_code == 302, response.text
    return response.headers["location"]


def follow(
    browser: httpx.Client, response: httpx.Response, stop_at: str | None = None
) -> httpx.Response | str:
    """Follow redirects; with `stop_at`, return the first redirect target starting with it."""
    for _ in range(MAX_REDIRECTS):
        if not response.is_redirect:
            return response
        target = str(response.url.join(response.headers["location"]))
        if stop_at and target.startswith(stop_at):
            return target
        response = browser.get(target)
    raise AssertionError("too many redirects")


def sign_in_at_provider(
    browser: httpx.Client, provider: OidcProvider, authorize_url: str, account: dict
) -> str:
    """Log in at the provider's own page; the callback URL it sends the browser back to."""
    page = follow(browser, browser.get(authorize_url))
    assert page.status_code == 200, page.text
    action = re.search(r'action="([^"]+)"', page.text).group(1)
    answer = browser.post(
        str(page.url.join(action)), data={"login": account["sub"], "password": account["password"]}
    )
    callback = follow(browser, answer, stop_at=provider.callback_url)
    assert isinstance(callback, str), callback.text
    return callback


def finish(browser: httpx.Client, callback_url: str) -> httpx.Response:
    return follow(browser, browser.get(callback_url))


def login(browser: httpx.Client, stack, provider: OidcProvider, account: dict) -> httpx.Response:
    return finish(browser, sign_in_at_provider(browser, provider, start_login(browser, stack), account))


def api_tokens(browser: httpx.Client, stack) -> httpx.Response:
    """What the signed-in browser gets from POST /v1/auth/oidc/token."""
    csrf = browser.cookies.get("csrftoken", domain="127.0.0.1") or ""
    return browser.post(f"{stack.api_url}/auth/oidc/token", headers={"X-CSRFToken": csrf})


def social_accounts(account: dict) -> list[SocialAccount]:
    return list(SocialAccount.objects.filter(provider=PROVIDER_ID, uid=account["sub"]))


def test_a_first_login_creates_the_user_a_personal_organization_and_a_session(stack, oidc, browser):
    account = oidc.add_account(email=fresh_email(), email_verified=True)

    page = login(browser, stack, oidc, account)

    assert page.status_code == 200, page.text
    assert page.url.path == "/accounts/api-token/"
    [linked] = social_accounts(account)
    user = linked.user
    assert user.email == account["email"]
    assert not user.has_usable_password()
    assert EmailAddress.objects.get(user=user).verified is True
    [membership] = Membership.objects.filter(user=user)
    assert membership.role == Membership.Role.OWNER
    assert user.default_organization == membership.organization
    assert membership.organization.agents.filter(slug="echo").exists()
    assert browser.cookies.get("sessionid", domain="127.0.0.1")


def test_the_session_buys_a_jwt_pair_that_works_on_the_api(stack, oidc, browser):
    account = oidc.add_account(email=fresh_email(), email_verified=True)
    login(browser, stack, oidc, account)
    user = social_accounts(account)[0].user

    response = api_tokens(browser, stack)

    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    pair = response.json()
    bearer = {"Authorization": f"Bearer {pair['access']}"}
    with httpx.Client(timeout=30) as api:  # no cookies: the token alone
        models = api.get(f"{stack.api_url}/models", headers=bearer)
        answer = api.post(
            f"{stack.api_url}/chat/completions",
            headers=bearer,
            json={"model": "echo", "messages": [{"role": "user", "content": "hello after sso"}]},
        )
        refreshed = api.post(f"{stack.api_url}/auth/token/refresh", json={"refresh": pair["refresh"]})
    assert models.status_code == 200, models.text
    assert [model["id"] for model in models.json()["data"]] == ["echo"]
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"].startswith("You said: hello after sso")
    session_id = answer.json()["session_id"]
    assert Session.objects.filter(organization=user.default_organization, external_id=session_id).count() == 1
    assert refreshed.status_code == 200


def test_the_token_page_button_shows_a_pair_that_works_on_the_api(stack, oidc, browser):
    # given a person who signed in through the provider and landed on the token page
    account = oidc.add_account(email=fresh_email(), email_verified=True)
    page = login(browser, stack, oidc, account)
    assert (page.status_code, page.url.path) == (200, "/accounts/api-token/")
    # when they press its button
    pressed = press_the_button(browser, page)
    # then the page shows a pair whose access token works on the API alone
    assert (pressed.status_code, pressed.headers["cache-control"]) == (200, "no-store")
    pair = shown_pair(pressed)
    with httpx.Client(timeout=30) as api:  # no cookies: the token alone
        models = api.get(f"{stack.api_url}/models", headers={"Authorization": f"Bearer {pair.access}"})
    organization = social_accounts(account)[0].user.default_organization
    echo = organization.agents.get(slug="echo")
    assert (models.status_code, models.json()) == (
        200,
        {
            "object": "list",
            "data": [
                {
                    "id": "echo",
                    "object": "model",
                    "created": int(echo.created.timestamp()),
                    "owned_by": organization.slug,
                }
            ],
        },
    )


def test_the_token_endpoint_needs_the_session_and_the_csrf_token(stack, oidc, browser):
    anonymous = browser.post(f"{stack.api_url}/auth/oidc/token")
    account = oidc.add_account(email=fresh_email(), email_verified=True)
    login(browser, stack, oidc, account)

    without_csrf = browser.post(f"{stack.api_url}/auth/oidc/token")
    wrong_csrf = browser.post(f"{stack.api_url}/auth/oidc/token", headers={"X-CSRFToken": "x" * 32})

    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"
    for refused in (without_csrf, wrong_csrf):
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["type"] == "permission_error"
    assert api_tokens(browser, stack).status_code == 200


def test_a_second_provider_account_with_the_same_verified_email_links_to_the_user(stack, oidc, browser):
    email = fresh_email()
    first = oidc.add_account(email=email, email_verified=True)
    second = oidc.add_account(email=email, email_verified=True)
    login(browser, stack, oidc, first)
    user = social_accounts(first)[0].user
    browser.cookies.clear()

    page = login(browser, stack, oidc, second)

    assert page.status_code == 200
    assert social_accounts(second)[0].user == user
    assert User.objects.filter(email=email).count() == 1
    assert Membership.objects.filter(user=user).count() == 1
    assert Organization.objects.filter(memberships__user=user).count() == 1


def test_a_verified_email_links_to_an_existing_local_user(stack, oidc, browser, tenant):
    email = fresh_email()
    existing = User.objects.create(
        username=f"local-{uuid.uuid4().hex[:8]}",
        email=email,
        password=live_password_hash("local-password"),
        default_organization=tenant.organization,
    )
    Membership.objects.create(user=existing, organization=tenant.organization, role=Membership.Role.ADMIN)
    EmailAddress.objects.create(user=existing, email=email, verified=True, primary=True)
    account = oidc.add_account(email=email, email_verified=True)

    login(browser, stack, oidc, account)
    pair = api_tokens(browser, stack).json()

    assert social_accounts(account)[0].user == existing
    assert User.objects.filter(email=email).count() == 1
    assert list(Membership.objects.filter(user=existing).values_list("organization", "role")) == [
        (tenant.organization.pk, Membership.Role.ADMIN)
    ]
    models = httpx.get(f"{stack.api_url}/models", headers={"Authorization": f"Bearer {pair['access']}"})
    assert models.status_code == 200
    # Their own, verified address: the password still works.
    by_password = httpx.post(
        f"{stack.api_url}/auth/token", json={"username": existing.username, "password": "local-password"}
    )
    assert by_password.status_code == 200


def test_an_unverified_email_does_not_link_to_the_user_who_has_it(stack, oidc, browser):
    email = fresh_email()
    owner_account = oidc.add_account(email=email, email_verified=True)
    login(browser, stack, oidc, owner_account)
    owner = social_accounts(owner_account)[0].user
    browser.cookies.clear()
    impostor = oidc.add_account(email=email, email_verified=False)

    page = login(browser, stack, oidc, impostor)

    assert "Sign Up Closed" in page.text
    assert social_accounts(impostor) == []
    owners_links = SocialAccount.objects.filter(user=owner).values_list("uid", flat=True)
    assert list(owners_links) == [owner_account["sub"]]
    assert User.objects.filter(email=email).count() == 1
    assert api_tokens(browser, stack).status_code == 401


def test_an_unverified_email_makes_no_new_user(stack, oidc, browser):
    account = oidc.add_account(email=fresh_email(), email_verified=False)
    users_before = User.objects.count()

    page = login(browser, stack, oidc, account)

    assert "Sign Up Closed" in page.text
    assert social_accounts(account) == []
    assert User.objects.count() == users_before
    assert api_tokens(browser, stack).status_code == 401


def test_a_tampered_state_is_refused(stack, oidc, browser):
    account = oidc.add_account(email=fresh_email(), email_verified=True)
    callback = sign_in_at_provider(browser, oidc, start_login(browser, stack), account)

    page = finish(browser, with_query(callback, state="forged-state-value"))

    assert "Third-Party Login Failure" in page.text
    assert social_accounts(account) == []
    assert User.objects.filter(email=account["email"]).count() == 0
    assert api_tokens(browser, stack).status_code == 401


def test_a_callback_is_good_for_one_browser_and_once(stack, oidc, browser):
    account = oidc.add_account(email=fresh_email(), email_verified=True)
    callback = sign_in_at_provider(browser, oidc, start_login(browser, stack), account)

    with httpx.Client(timeout=30) as other_browser:
        stolen = follow(other_browser, other_browser.get(callback))
        assert "Third-Party Login Failure" in stolen.text
        assert api_tokens(other_browser, stack).status_code == 401
    assert social_accounts(account) == []
    assert finish(browser, callback).url.path == "/accounts/api-token/"
    replayed = finish(browser, callback)
    assert "Third-Party Login Failure" in replayed.text
    assert len(social_accounts(account)) == 1


@pytest.mark.parametrize("nonce", ["someone-elses-nonce", None], ids=["mismatched", "missing"])
def test_an_id_token_without_this_logins_nonce_is_refused(stack, oidc, browser, nonce):
    account = oidc.add_account(email=fresh_email(), email_verified=True)
    authorize_url = start_login(browser, stack)
    assert query_of(authorize_url)["nonce"]
    # The provider puts whatever nonce the authorization request carries into the ID token.
    callback = sign_in_at_provider(browser, oidc, with_query(authorize_url, nonce=nonce), account)

    page = finish(browser, callback)

    assert "Third-Party Login Failure" in page.text
    assert social_accounts(account) == []
    assert User.objects.filter(email=account["email"]).count() == 0
    assert api_tokens(browser, stack).status_code == 401


def test_the_authorization_request_uses_pkce_and_the_openid_scopes(stack, oidc, browser):
    query = query_of(start_login(browser, stack))

    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert set(query["scope"].split()) == {"openid", "email", "profile"}
    assert query["response_type"] == "code"
    assert query["redirect_uri"] == oidc.callback_url
    assert len(query["state"]) >= 16
