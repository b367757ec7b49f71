"""API keys and per-key rate limits (token buckets), checked before any route does work."""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass

from hybridrec.config import ServingSettings

API_KEY_HEADER = "X-API-Key"


class AccessDenied(Exception):
    def __init__(self, status: int, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after_s = status, message, retry_after_s


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """``rate`` tokens per second up to ``burst`` per key; one request costs one token."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when allowed, else the seconds until a token is available."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.setdefault(key, _Bucket(float(self.burst), now))
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self.rate


class Authorizer:
    def __init__(self, settings: ServingSettings):
        self.keys = tuple(settings.api_keys)
        self.read_requires_key = settings.read_requires_key
        self.buckets = TokenBuckets(settings.rate_limit_per_s, settings.rate_limit_burst)

    def _valid(self, key: str | None) -> bool:
        return key is not None and any(hmac.compare_digest(key, k) for k in self.keys)

    def check(self, key: str | None, client: str, write: bool) -> None:
        """Raise :class:`AccessDenied` unless the caller may proceed now."""
        if write or self.read_requires_key:
            if not self.keys:
                raise AccessDenied(403, "this endpoint needs an API key and none is configured (serving.api_keys)")
            if key is None:
                raise AccessDenied(401, f"missing API key: send it in the {API_KEY_HEADER} header")
            if not self._valid(key):
                raise AccessDenied(401, f"unknown API key in {API_KEY_HEADER}")
        bucket_key = f"key:{key}" if self._valid(key) else f"client:{client}"
        wait = self.buckets.take(bucket_key)
        if wait > 0:
            raise AccessDenied(429, "rate limit exceeded; retry later", retry_after_s=wait)
