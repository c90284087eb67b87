"""Reading Parley's HTML pages as a browser does: hidden CSRF tokens, a page's form, and the token
page's button."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx


def hidden_csrf(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def the_form(html: str) -> tuple[str, str, dict[str, str]]:
    """The page's one form as a browser sends it: method, action and its input fields."""
    [form] = re.findall(r"<form\b[^>]*>.*?</form>", html, flags=re.S)
    opening = re.match(r"<form\b[^>]*>", form).group(0)
    method = re.search(r'method="([^"]*)"', opening).group(1)
    action = re.search(r'action="([^"]*)"', opening)
    fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', form))
    return method.upper(), action.group(1) if action else "", fields


def press_the_button(browser: httpx.Client, page: httpx.Response, **changed: str) -> httpx.Response:
    """Submit the page's form (with `changed` fields) as a browser does: form-encoded."""
    method, action, fields = the_form(page.text)
    return browser.request(method, str(page.url.join(action)), data={**fields, **changed})


@dataclass
class ShownPair:
    access: str
    refresh: str


def shown_pair(page: httpx.Response) -> ShownPair:
    """The JWT pair that /accounts/api-token/ shows after its button was pressed."""
    access = re.search(r'id="access-token"[^>]*>([^<]+)<', page.text).group(1).strip()
    refresh = re.search(r'id="refresh-token"[^>]*>([^<]+)<', page.text).group(1).strip()
    return ShownPair(access=access, refresh=refresh)
