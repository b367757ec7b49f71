"""Who is calling: the service's API key, the end user's signed claim, and per-key rate limits.

Two credentials, as behind an API gateway. The **API key** (``X-API-Key``) identifies the calling
service (the app backend, the gateway): writes always need one, reads too unless
``serving.read_requires_key`` is false. The **user claim** (``Authorization: Bearer <JWT>``) is
what the gateway forwards after it authenticated the end user: an HS256 JSON Web Token signed with
``serving.user_token_secret``, ``sub`` the user id, ``exp`` checked (and ``aud`` when configured).
Only a caller holding a valid claim for the feed's own user gets reasons that name what the user
did ("because you searched for 'ramen'"); everyone else gets reasons naming only the source.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

from hybridrec.config import ServingSettings
from hybridrec.serving.ratelimit import TokenBuckets

API_KEY_HEADER = "X-API-Key"
USER_TOKEN_ALGORITHM = "HS256"


class AccessDenied(Exception):
    def __init__(self, status: int, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after_s = status, message, retry_after_s


@dataclass(frozen=True)
class Caller:
    """What the request proved: a valid service key, and the end user its claim names (if any)."""

    has_key: bool
    user_id: str | None = None

    def is_user(self, user_id: str) -> bool:
        return self.user_id is not None and hmac.compare_digest(self.user_id, user_id)


def sign_user_token(secret: str, user_id: str, ttl_s: float, audience: str = "") -> str:
    """A user claim as the gateway would sign it (for ``hybridrec feed``, tests and examples)."""
    claims = {"sub": user_id, "exp": int(time.time() + ttl_s), **({"aud": audience} if audience else {})}
    return jwt.encode(claims, secret, algorithm=USER_TOKEN_ALGORITHM)


class Authorizer:
    def __init__(self, settings: ServingSettings, rate_limit_table: Path | None = None):
        self.keys = tuple(settings.api_keys)
        self.read_requires_key = settings.read_requires_key
        self.secret = settings.user_token_secret.get_secret_value()
        self.audience = settings.user_token_audience
        self.buckets = TokenBuckets(settings.rate_limit_per_s, settings.rate_limit_burst, settings.rate_limit_slots,
                                    rate_limit_table)

    def _valid(self, key: str | None) -> bool:
        return key is not None and any(hmac.compare_digest(key, k) for k in self.keys)

    def user(self, token: str | None) -> str | None:
        """The user id of a valid claim; None without one. A claim that is sent but invalid is a 401,
        so a gateway's misconfiguration shows instead of silently serving generic reasons."""
        if token is None:
            return None
        if not self.secret:
            raise AccessDenied(401, "user tokens are not accepted: no serving.user_token_secret is configured")
        try:
            claims = jwt.decode(token, self.secret, algorithms=[USER_TOKEN_ALGORITHM],
                                audience=self.audience or None, options={"require": ["sub", "exp"]})
        except jwt.ExpiredSignatureError:
            raise AccessDenied(401, "the user token has expired") from None
        except jwt.InvalidTokenError as err:
            raise AccessDenied(401, f"invalid user token: {err}") from None
        return str(claims["sub"])

    def check(self, key: str | None, client: str, write: bool, token: str | None = None) -> Caller:
        """The caller, or :class:`AccessDenied` unless it may proceed now."""
        if write or self.read_requires_key:
            if not self.keys:
                raise AccessDenied(403, "this endpoint needs an API key and none is configured (serving.api_keys)")
            if key is None:
                raise AccessDenied(401, f"missing API key: send it in the {API_KEY_HEADER} header")
            if not self._valid(key):
                raise AccessDenied(401, f"unknown API key in {API_KEY_HEADER}")
        has_key = self._valid(key)
        wait = self.buckets.take(f"key:{key}" if has_key else f"client:{client}")
        if wait > 0:
            raise AccessDenied(429, "rate limit exceeded; retry later", retry_after_s=wait)
        return Caller(has_key, self.user(token))
