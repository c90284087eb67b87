"""JWT bearer tokens for users, on djangorestframework-simplejwt's token machinery.

The algorithm is pinned in settings (SIMPLE_JWT["ALGORITHM"], HS256): simplejwt decodes with
exactly that algorithm, so `alg: none` and tokens signed by another key fail. `sub` is the user's
immutable primary key, never the username. Access tokens are short-lived and stateless; refresh
tokens are recorded (without their signature) in simplejwt's outstanding-token table, rotate on
every use and are blacklisted when used or revoked, so a refresh token works once.

Each token also carries a fingerprint of the user's credentials: changing the password (or
allauth wiping it when it links a login by email) makes every token issued before it invalid.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.crypto import constant_time_compare, salted_hmac
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken, Token, UntypedToken
from rest_framework_simplejwt.utils import datetime_from_epoch

from accounts.models import User
from config.errors import AuthenticationFailed, PermissionDenied

# Changes whenever the user's password hash changes; HMAC'd so the token reveals nothing of it.
CREDENTIALS_CLAIM = "cfp"


class InvalidToken(AuthenticationFailed):
    default_code = "invalid_token"


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


def _credentials_fingerprint(user: User) -> str:
    digest = salted_hmac("parley.jwt.credentials", user.password, secret=api_settings.SIGNING_KEY)
    return digest.hexdigest()[:24]


def _without_signature(token: Token) -> str:
    # The outstanding-token table is for bookkeeping; a database dump must not hold usable tokens.
    return str(token).rsplit(".", 1)[0]


def _record(refresh: RefreshToken, user: User | None) -> OutstandingToken:
    outstanding, _ = OutstandingToken.objects.get_or_create(
        jti=refresh[api_settings.JTI_CLAIM],
        defaults={
            "user": user,
            "token": _without_signature(refresh),
            "created_at": datetime_from_epoch(refresh["iat"]),
            "expires_at": datetime_from_epoch(refresh["exp"]),
        },
    )
    return outstanding


def _decode(token_class: type[Token], raw_token: str) -> Token:
    try:
        return token_class(raw_token)
    except TokenError as error:
        message = str(error.args[0]) if error.args else "Token is invalid"
        raise InvalidToken(message.rstrip(".") + ".") from None


def _user_of(token: Token) -> User:
    """The active user a token speaks for, with the credentials it was issued against."""
    user_id = token.get(api_settings.USER_ID_CLAIM)
    user = User.objects.filter(pk=user_id).first() if str(user_id or "").isdigit() else None
    if user is None or not user.is_active:
        raise InvalidToken("The token's user does not exist or is inactive.")
    if not constant_time_compare(str(token.get(CREDENTIALS_CLAIM, "")), _credentials_fingerprint(user)):
        raise InvalidToken("The token was issued before the user's credentials changed.")
    return user


def _is_blacklisted(token: Token) -> bool:
    return BlacklistedToken.objects.filter(token__jti=token.get(api_settings.JTI_CLAIM)).exists()


def _use_up(refresh: RefreshToken, user: User | None) -> None:
    """Blacklist a refresh token; refuse it if it was already blacklisted. Two concurrent uses
    of one token race on the blacklist's unique row, so exactly one of them wins."""
    _, created = BlacklistedToken.objects.get_or_create(token=_record(refresh, user))
    if not created:
        raise InvalidToken("Token is blacklisted.")


def jwt_pair_issue(*, user: User) -> TokenPair:
    """A new access and refresh token for an authenticated, active user."""
    refresh = RefreshToken()
    refresh[api_settings.USER_ID_CLAIM] = str(getattr(user, api_settings.USER_ID_FIELD))
    refresh[CREDENTIALS_CLAIM] = _credentials_fingerprint(user)
    _record(refresh, user)
    return TokenPair(access=str(refresh.access_token), refresh=str(refresh))


def jwt_pair_refresh(*, raw_refresh: str) -> TokenPair:
    """Exchange a refresh token for a new pair (rotation); the old refresh token is used up."""
    refresh = _decode(RefreshToken, raw_refresh)
    user = _user_of(refresh)
    _use_up(refresh, user)
    return jwt_pair_issue(user=user)


def jwt_refresh_revoke(*, raw_refresh: str, user: User) -> None:
    """Log out: the user's refresh token can no longer be used. Another user's is refused."""
    refresh = _decode(RefreshToken, raw_refresh)
    if str(refresh.get(api_settings.USER_ID_CLAIM)) != str(user.pk):
        raise PermissionDenied("This refresh token belongs to another user.", param="refresh")
    _use_up(refresh, user)


def jwt_verify(*, raw_token: str) -> None:
    """Raise InvalidToken unless the token (access or refresh) is valid now."""
    token = _decode(UntypedToken, raw_token)
    if token.get(api_settings.TOKEN_TYPE_CLAIM) not in {"access", "refresh"}:
        raise InvalidToken("Token has wrong type.")
    if _is_blacklisted(token):
        raise InvalidToken("Token is blacklisted.")
    _user_of(token)


def jwt_authenticate(*, raw_token: str) -> User:
    """The user behind an access token sent as `Authorization: Bearer`."""
    return _user_of(_decode(AccessToken, raw_token))


def looks_like_jwt(raw_token: str) -> bool:
    return raw_token.count(".") == 2
