"""A real OpenID Connect provider for the login tests: tests/oidc/server.js, on the npm package
`oidc-provider`, run by Node.js on loopback.

Its port is taken (bound) before the live Parley stack starts, so the stack can be told the
provider's URL; the provider itself starts once the stack's URL is known, because the client's
redirect URI must name Parley's callback exactly. The bound socket is handed to Node, so no
other process can take the port in between."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

OIDC_DIR = Path(__file__).resolve().parent / "oidc"
# allauth's callback for the provider is /accounts/oidc/<provider id>/login/callback/.
PROVIDER_ID = "parley-test"


@dataclass
class OidcListener:
    """The provider's port and client, reserved before the Parley stack starts."""

    sock: socket.socket
    client_id: str = field(default_factory=lambda: f"parley-{uuid.uuid4().hex[:8]}")
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    control_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def parley_env(self) -> dict[str, str]:
        """What the Parley stack needs to know of the provider."""
        return {
            "PARLEY_OIDC_SERVER_URL": self.url,
            "PARLEY_OIDC_CLIENT_ID": self.client_id,
            "PARLEY_OIDC_CLIENT_SECRET": self.client_secret,
            "PARLEY_OIDC_PROVIDER_ID": PROVIDER_ID,
            "PARLEY_OIDC_NAME": "Parley test provider",
        }


def reserve() -> OidcListener:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return OidcListener(sock=sock)


@dataclass
class OidcProvider:
    listener: OidcListener
    callback_url: str
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return self.listener.url

    def add_account(self, *, email: str, email_verified: bool, password: str = "") -> dict[str, str]:
        """A new identity at the provider; returns its sub, login password and email."""
        account = {
            "sub": f"user-{uuid.uuid4().hex[:12]}",
            "password": password or secrets.token_urlsafe(12),
            "email": email,
            "email_verified": email_verified,
        }
        account["name"] = f"Test {account['sub']}"
        response = httpx.post(
            f"{self.url}/_test/accounts",
            json=account,
            headers={"Authorization": f"Bearer {self.listener.control_token}"},
            timeout=10,
        )
        response.raise_for_status()
        return account


def missing_requirement() -> str | None:
    """Why the provider cannot run here, or None."""
    if shutil.which("node") is None:
        return "Node.js (node) is not installed"
    if not (OIDC_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        return "tests/oidc has no node_modules/oidc-provider: run `make install-test` (npm ci)"
    return None


def start(listener: OidcListener, parley_url: str, log_dir: Path) -> OidcProvider:
    callback_url = f"{parley_url}/accounts/oidc/{PROVIDER_ID}/login/callback/"
    fd = listener.sock.fileno()
    env = {
        **os.environ,
        "OIDC_LISTEN_FD": str(fd),
        "OIDC_PORT": str(listener.sock.getsockname()[1]),
        "OIDC_CLIENT_ID": listener.client_id,
        "OIDC_CLIENT_SECRET": listener.client_secret,
        "OIDC_REDIRECT_URIS": callback_url,
        "OIDC_CONTROL_TOKEN": listener.control_token,
    }
    log = log_dir / "oidc-provider.log"
    process = subprocess.Popen(
        [shutil.which("node") or "node", "server.js"],
        cwd=OIDC_DIR,
        env=env,
        pass_fds=(fd,),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    discovery = f"{listener.url}/.well-known/openid-configuration"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"oidc-provider exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(discovery, timeout=1).status_code == 200:
                return OidcProvider(listener=listener, callback_url=callback_url, process=process, log=log)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"oidc-provider did not become ready in 30 s:\n{log.read_text()[-4000:]}")


def stop(provider: OidcProvider) -> None:
    if provider.process.poll() is None:
        provider.process.terminate()
        try:
            provider.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            provider.process.kill()
            provider.process.wait()
