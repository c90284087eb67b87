"""JWT bearer tokens for users: issue, refresh (rotation), verify, logout (blacklist); forged
tokens refused; the organization a user acts in (X-Organization); a JWT on every kind of endpoint."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import time
import uuid

import httpx
import jwt as pyjwt
import pytest
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.models import Membership, User
from agents.services import agent_create
from sessions.models import Session
from tests.conftest import JWT_SIGNING_KEY, Person, Tenant, live_password_hash, make_person, make_tenant
from tests.pages import hidden_csrf, press_the_button, shown_pair


def post(stack, path: str, body: dict, token: str | None = None, **headers: str) -> httpx.Response:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{stack.api_url}{path}", json=body, headers=headers, timeout=30)


def get(stack, path: str, token: str, **headers: str) -> httpx.Response:
    return httpx.get(
        f"{stack.api_url}{path}", headers={"Authorization": f"Bearer {token}", **headers}, timeout=30
    )


def sign_in(stack, person: Person) -> dict[str, str]:
    response = post(stack, "/auth/token", {"username": person.user.username, "password": person.password})
    assert response.status_code == 200, response.text
    return response.json()


def claims(token: str) -> dict:
    return pyjwt.decode(token, options={"verify_signature": False})


def b64(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def assert_unauthenticated(response: httpx.Response, code: str = "invalid_token") -> None:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["type"] == "authentication_error"
    assert error["code"] == code


def chat(stack, token: str, text: str, **headers: str) -> httpx.Response:
    body = {"model": "echo", "messages": [{"role": "user", "content": text}]}
    return post(stack, "/chat/completions", body, token, **headers)


@pytest.fixture
def person(tenant: Tenant) -> Person:
    return make_person(tenant, Membership.Role.MEMBER)


# --- issuing -----------------------------------------------------------------------------------


def test_username_and_password_give_an_access_and_a_refresh_token(stack, person):
    response = post(stack, "/auth/token", {"username": person.user.username, "password": person.password})

    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    pair = response.json()
    assert set(pair) == {"access", "refresh"}
    header = pyjwt.get_unverified_header(pair["access"])
    assert header["alg"] == "HS256"
    access, refresh = claims(pair["access"]), claims(pair["refresh"])
    assert access["sub"] == refresh["sub"] == str(person.user.pk)
    assert (access["token_type"], refresh["token_type"]) == ("access", "refresh")
    # The pair expires relative to one instant; the access token's iat may be a second later.
    assert 15 * 60 - 1 <= access["exp"] - access["iat"] <= 15 * 60
    assert refresh["exp"] - refresh["iat"] == 7 * 24 * 3600
    # Signed with the configured key, and with nothing of the password in it.
    pyjwt.decode(pair["access"], JWT_SIGNING_KEY, algorithms=["HS256"])
    assert person.password not in json.dumps(access)
    assert person.user.password not in json.dumps(access)
    person.user.refresh_from_db()
    assert person.user.last_login is not None


def test_wrong_password_or_unknown_user_is_401_and_issues_nothing(stack, person):
    wrong = post(stack, "/auth/token", {"username": person.user.username, "password": "nope"})
    unknown = post(stack, "/auth/token", {"username": f"ghost-{uuid.uuid4().hex}", "password": "x"})

    for response in (wrong, unknown):
        assert_unauthenticated(response, code="invalid_credentials")
        assert response.json()["error"]["message"] == "Incorrect username or password."
    assert person.user.outstandingtoken_set.count() == 0


def test_an_inactive_user_gets_no_token(stack, person):
    User.objects.filter(pk=person.user.pk).update(is_active=False)

    response = post(stack, "/auth/token", {"username": person.user.username, "password": person.password})

    assert_unauthenticated(response, code="invalid_credentials")


def test_a_missing_field_is_a_400_naming_it(stack):
    response = post(stack, "/auth/token", {"username": "someone"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "password"
    assert error["code"] == "missing_required_parameter"


# --- refresh, verify, logout -------------------------------------------------------------------


def test_refresh_rotates_and_the_old_refresh_token_is_used_up(stack, person):
    first = sign_in(stack, person)

    rotated = post(stack, "/auth/token/refresh", {"refresh": first["refresh"]})

    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert set(second) == {"access", "refresh"}
    assert second["refresh"] != first["refresh"]
    assert claims(second["refresh"])["jti"] != claims(first["refresh"])["jti"]
    assert get(stack, "/models", second["access"]).status_code == 200
    # A refresh token works once: its reuse is refused, and the new one still works.
    assert_unauthenticated(post(stack, "/auth/token/refresh", {"refresh": first["refresh"]}))
    assert post(stack, "/auth/token/refresh", {"refresh": second["refresh"]}).status_code == 200


def test_concurrent_uses_of_one_refresh_token_rotate_it_once(stack, person):
    pair = sign_in(stack, person)

    def use_it(_: int) -> httpx.Response:
        return post(stack, "/auth/token/refresh", {"refresh": pair["refresh"]})

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(use_it, range(4)))

    assert sorted(response.status_code for response in answers) == [200, 401, 401, 401]


def test_verify_accepts_live_tokens_and_refuses_dead_ones(stack, person):
    pair = sign_in(stack, person)

    assert post(stack, "/auth/token/verify", {"token": pair["access"]}).status_code == 200
    assert post(stack, "/auth/token/verify", {"token": pair["refresh"]}).json() == {}
    assert_unauthenticated(post(stack, "/auth/token/verify", {"token": pair["access"][:-2] + "xx"}))
    post(stack, "/auth/token/refresh", {"refresh": pair["refresh"]})
    assert_unauthenticated(post(stack, "/auth/token/verify", {"token": pair["refresh"]}))


def test_logout_blacklists_the_refresh_token(stack, person):
    pair = sign_in(stack, person)

    response = post(stack, "/auth/logout", {"refresh": pair["refresh"]}, pair["access"])

    assert response.status_code == 204, response.text
    assert_unauthenticated(post(stack, "/auth/token/refresh", {"refresh": pair["refresh"]}))
    assert_unauthenticated(post(stack, "/auth/logout", {"refresh": pair["refresh"]}, pair["access"]))


def test_logout_refuses_another_users_refresh_token_and_api_keys(stack, tenant, person):
    other = make_person(tenant, Membership.Role.MEMBER)
    mine, theirs = sign_in(stack, person), sign_in(stack, other)

    with_my_token = post(stack, "/auth/logout", {"refresh": theirs["refresh"]}, mine["access"])
    with_a_key = post(stack, "/auth/logout", {"refresh": theirs["refresh"]}, tenant.key)

    assert with_my_token.status_code == 403
    assert with_a_key.status_code == 403
    assert post(stack, "/auth/token/refresh", {"refresh": theirs["refresh"]}).status_code == 200


def test_a_password_change_ends_the_tokens_issued_before_it(stack, person):
    pair = sign_in(stack, person)
    User.objects.filter(pk=person.user.pk).update(password=live_password_hash("new-password-1"))

    assert_unauthenticated(get(stack, "/models", pair["access"]))
    assert_unauthenticated(post(stack, "/auth/token/refresh", {"refresh": pair["refresh"]}))
    again = post(stack, "/auth/token", {"username": person.user.username, "password": "new-password-1"})
    assert again.status_code == 200


def test_a_deactivated_user_is_refused_at_once(stack, person):
    pair = sign_in(stack, person)
    User.objects.filter(pk=person.user.pk).update(is_active=False)

    assert_unauthenticated(get(stack, "/models", pair["access"]))
    assert_unauthenticated(post(stack, "/auth/token/refresh", {"refresh": pair["refresh"]}))


# --- forged tokens -----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_forged_tokens_are_refused_with_the_401_envelope(stack, tenant, person):
    real = sign_in(stack, person)["access"]
    payload = claims(real)
    victim = make_person(tenant, Membership.Role.OWNER)
    header, body, signature = real.split(".")
    now = int(time.time())
    forged = {
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{body}.",
        "alg none, signature kept": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{body}.{signature}",
        "wrong key": pyjwt.encode(payload, "another-key-" + "x" * 40, algorithm="HS256"),
        "HS512 with the right key": pyjwt.encode(payload, JWT_SIGNING_KEY, algorithm="HS512"),
        "expired": pyjwt.encode(
            {**payload, "iat": now - 3600, "exp": now - 60}, JWT_SIGNING_KEY, algorithm="HS256"
        ),
        "tampered payload": f"{header}.{b64({**payload, 'sub': str(victim.user.pk)})}.{signature}",
        "a refresh token": sign_in(stack, person)["refresh"],
        "garbage": "a.b.c",
    }

    for name, token in forged.items():
        for response in (get(stack, "/models", token), chat(stack, token, f"forged {name}")):
            assert response.status_code == 401, (name, response.text)
            assert set(response.json()) == {"error"}, name
            assert response.json()["error"]["type"] == "authentication_error", name
    assert get(stack, "/models", real).status_code == 200


# --- the organization a user acts in -----------------------------------------------------------


def two_organizations_person() -> tuple[Person, Tenant, Tenant]:
    home, away = make_tenant("home"), make_tenant("away")
    person = make_person(home, Membership.Role.OWNER)
    Membership.objects.create(user=person.user, organization=away.organization, role=Membership.Role.MEMBER)
    agent_create(organization=away.organization, slug="away-only", backend="echo")
    return person, home, away


def model_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(model["id"] for model in response.json()["data"])


def test_x_organization_switches_between_the_users_organizations(stack):
    person, home, away = two_organizations_person()
    access = sign_in(stack, person)["access"]

    default = get(stack, "/models", access)
    switched = get(stack, "/models", access, **{"X-Organization": away.organization.slug})
    answer = chat(stack, access, "hello away", **{"X-Organization": away.organization.slug})

    assert model_ids(default) == ["echo"]
    assert model_ids(switched) == ["away-only", "echo"]
    assert answer.status_code == 200, answer.text
    session_id = answer.json()["session_id"]
    assert Session.objects.filter(organization=away.organization, external_id=session_id).count() == 1
    assert not Session.objects.filter(organization=home.organization, external_id=session_id).exists()


def test_a_non_member_or_unknown_organization_is_the_same_403(stack, other_tenant):
    person, _, _ = two_organizations_person()
    access = sign_in(stack, person)["access"]

    foreign = get(stack, "/models", access, **{"X-Organization": other_tenant.organization.slug})
    unknown = get(stack, "/models", access, **{"X-Organization": f"no-such-{uuid.uuid4().hex}"})
    chat_foreign = chat(stack, access, "hi", **{"X-Organization": other_tenant.organization.slug})
    sessions_before = Session.objects.filter(organization=other_tenant.organization).count()

    for response in (foreign, unknown, chat_foreign):
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "permission_denied"
    assert foreign.json() == unknown.json() == chat_foreign.json()
    assert Session.objects.filter(organization=other_tenant.organization).count() == sessions_before


def test_without_a_default_the_only_membership_is_used_and_several_need_the_header(stack):
    person, _, away = two_organizations_person()
    User.objects.filter(pk=person.user.pk).update(default_organization=None)
    access = sign_in(stack, person)["access"]

    several = get(stack, "/models", access)
    Membership.objects.filter(user=person.user, organization=away.organization).delete()
    only_one = get(stack, "/models", access)

    assert several.status_code == 403
    assert several.json()["error"]["param"] == "X-Organization"
    assert model_ids(only_one) == ["echo"]


def test_a_user_removed_from_their_default_organization_cannot_act_in_it(stack):
    person, home, _ = two_organizations_person()
    access = sign_in(stack, person)["access"]
    Membership.objects.filter(user=person.user, organization=home.organization).delete()

    by_default = get(stack, "/models", access)
    by_name = get(stack, "/models", access, **{"X-Organization": home.organization.slug})

    # The default is stale: their only remaining organization is used instead.
    assert model_ids(by_default) == ["away-only", "echo"]
    assert by_name.status_code == 403


# --- every kind of endpoint --------------------------------------------------------------------


def test_a_jwt_works_as_bearer_on_chat_sessions_models_and_agents(stack, person):
    access = sign_in(stack, person)["access"]

    answer = chat(stack, access, "hello from a jwt")
    assert answer.status_code == 200, answer.text
    session_id = answer.json()["session_id"]
    streamed = httpx.post(
        f"{stack.api_url}/chat/completions",
        json={
            "model": "echo",
            "stream": True,
            "session_id": session_id,
            "messages": [{"role": "user", "content": "again"}],
        },
        headers={"Authorization": f"Bearer {access}"},
        timeout=30,
    )

    assert streamed.status_code == 200, streamed.text
    assert streamed.text.rstrip().endswith("data: [DONE]")
    assert get(stack, "/sessions", access).status_code == 200
    detail = get(stack, f"/sessions/{session_id}", access)
    assert detail.status_code == 200
    assert detail.json()["message_count"] == 4
    assert model_ids(get(stack, "/models", access)) == ["echo"]
    assert get(stack, "/models/echo", access).status_code == 200
    assert get(stack, "/agents", access).status_code == 200
    assert Session.objects.filter(organization=person.organization, external_id=session_id).count() == 1


def test_a_jwt_user_has_their_role_and_no_more(stack, person):
    access = sign_in(stack, person)["access"]

    response = post(stack, "/agents", {"slug": "by-a-member", "backend": "echo"}, access)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


# --- the browser's token page --------------------------------------------------------------------


def models_of(person: Person) -> dict:
    """What GET /v1/models answers the person: their organization's echo agent."""
    echo = person.organization.agents.get(slug="echo")
    model = {
        "id": "echo",
        "object": "model",
        "created": int(echo.created.timestamp()),
        "owned_by": person.organization.slug,
    }
    return {"object": "list", "data": [model]}


def test_the_token_page_button_gives_a_pair_that_works_on_the_api(stack, person):
    with httpx.Client(base_url=stack.url, timeout=30, follow_redirects=True) as browser:
        # given a person signed in in the browser with their password
        login_page = browser.get("/accounts/login/")
        signed_in = browser.post(
            "/accounts/login/",
            data={
                "csrfmiddlewaretoken": hidden_csrf(login_page.text),
                "login": person.user.username,
                "password": person.password,
            },
        )
        assert (signed_in.status_code, signed_in.url.path) == (200, "/accounts/api-token/")
        # when they press the page's button: its form, as the browser posts it
        pressed = press_the_button(browser, signed_in)
    # then the page shows a token pair, which no cache may keep
    assert pressed.status_code == 200, pressed.text
    assert pressed.headers["content-type"] == "text/html; charset=utf-8"
    assert pressed.headers["cache-control"] == "no-store"
    pair = shown_pair(pressed)
    assert claims(pair.access)["sub"] == claims(pair.refresh)["sub"] == str(person.user.pk)
    # and the access token alone works on the API
    models = get(stack, "/models", pair.access)
    assert (models.status_code, models.json()) == (200, models_of(person))
    refreshed = post(stack, "/auth/token/refresh", {"refresh": pair.refresh})
    assert (refreshed.status_code, sorted(refreshed.json())) == (200, ["access", "refresh"])


def test_the_token_page_button_without_the_csrf_token_issues_nothing(stack, person):
    with httpx.Client(base_url=stack.url, timeout=30, follow_redirects=True) as browser:
        login_page = browser.get("/accounts/login/")
        browser.post(
            "/accounts/login/",
            data={
                "csrfmiddlewaretoken": hidden_csrf(login_page.text),
                "login": person.user.username,
                "password": person.password,
            },
        )
        page = browser.get("/accounts/api-token/")
        forged = press_the_button(browser, page, csrfmiddlewaretoken="x" * 64)
    assert forged.status_code == 403
    assert "access-token" not in forged.text
    assert OutstandingToken.objects.filter(user=person.user).count() == 0


def test_the_session_token_endpoint_takes_the_csrf_token_as_header_or_form_field(stack, person):
    with httpx.Client(base_url=stack.url, timeout=30, follow_redirects=True) as browser:
        login_page = browser.get("/accounts/login/")
        signed_in = browser.post(
            "/accounts/login/",
            data={
                "csrfmiddlewaretoken": hidden_csrf(login_page.text),
                "login": person.user.username,
                "password": person.password,
            },
        )
        csrf = hidden_csrf(signed_in.text)
        by_header = browser.post("/v1/auth/oidc/token", headers={"X-CSRFToken": csrf})
        by_form_field = browser.post("/v1/auth/oidc/token", data={"csrfmiddlewaretoken": csrf})
    for response in (by_header, by_form_field):
        assert response.status_code == 200, response.text
        pair = response.json()
        assert sorted(pair) == ["access", "refresh"]
        assert claims(pair["access"])["sub"] == str(person.user.pk)
        models = get(stack, "/models", pair["access"])
        assert (models.status_code, models.json()) == (200, models_of(person))
