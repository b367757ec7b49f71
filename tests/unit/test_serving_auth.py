"""API keys, user claims and the rate-limit table shared by worker processes."""

from __future__ import annotations

import multiprocessing
import time

import jwt
import pytest
from pydantic import SecretStr

from hybridrec.config import ServingSettings
from hybridrec.serving.auth import AccessDenied, Authorizer, sign_user_token
from hybridrec.serving.ratelimit import SLOT, TokenBuckets, create_table, shared_table, table_from_environment

SECRET = "a-gateway-secret-of-enough-length-for-hs256"


def _authorizer(**overrides) -> Authorizer:
    return Authorizer(ServingSettings(api_keys=["k1"], user_token_secret=SecretStr(SECRET), **overrides))


def test_reads_need_a_key_by_default_and_writes_always():
    auth = _authorizer()
    for write in (False, True):
        with pytest.raises(AccessDenied) as missing:
            auth.check(None, "1.2.3.4", write=write)
        assert missing.value.status == 401 and "X-API-Key" in missing.value.message
        with pytest.raises(AccessDenied) as wrong:
            auth.check("k2", "1.2.3.4", write=write)
        assert wrong.value.status == 401
        assert auth.check("k1", "1.2.3.4", write=write).has_key
    open_reads = _authorizer(read_requires_key=False)
    assert not open_reads.check(None, "1.2.3.4", write=False).has_key
    with pytest.raises(AccessDenied) as unconfigured:
        Authorizer(ServingSettings()).check("k1", "1.2.3.4", write=False)
    assert unconfigured.value.status == 403


def test_a_user_claim_names_its_user_only_when_valid():
    auth = _authorizer()
    caller = auth.check("k1", "c", write=False, token=sign_user_token(SECRET, "u-alice", ttl_s=60))
    assert caller.is_user("u-alice") and not caller.is_user("u-bob")
    assert not auth.check("k1", "c", write=False).is_user("u-alice")
    bad_tokens = {
        "expired": sign_user_token(SECRET, "u-alice", ttl_s=-10),
        "signature": sign_user_token("another-secret-of-enough-length-for-hs256", "u-alice", ttl_s=60),
        "no exp": jwt.encode({"sub": "u-alice"}, SECRET, algorithm="HS256"),
        "alg none": jwt.encode({"sub": "u-alice", "exp": int(time.time()) + 60}, None, algorithm="none"),
        "garbage": "not.a.token",
    }
    for why, token in bad_tokens.items():
        with pytest.raises(AccessDenied) as denied:
            auth.check("k1", "c", write=False, token=token)
        assert denied.value.status == 401, why
    with pytest.raises(AccessDenied):  # no secret configured: no claim can be trusted
        Authorizer(ServingSettings(api_keys=["k1"])).check("k1", "c", False, sign_user_token(SECRET, "u", 60))


def test_the_audience_is_checked_when_configured():
    auth = _authorizer(user_token_audience="hybridrec-feed")
    assert auth.check("k1", "c", False, sign_user_token(SECRET, "u1", 60, audience="hybridrec-feed")).is_user("u1")
    with pytest.raises(AccessDenied):
        auth.check("k1", "c", False, sign_user_token(SECRET, "u1", 60, audience="another-service"))


def test_the_secret_is_never_printed():
    settings = ServingSettings(user_token_secret=SecretStr(SECRET))
    assert SECRET not in repr(settings) and SECRET not in settings.model_dump_json()


def test_token_bucket_refills_at_its_rate_up_to_the_burst():
    now = [100.0]
    buckets = TokenBuckets(rate=1, burst=2, slots=64, clock=lambda: now[0])
    assert buckets.take("k") == 0 and buckets.take("k") == 0
    assert buckets.take("k") == pytest.approx(1.0)
    now[0] += 0.5
    assert buckets.take("k") == pytest.approx(0.5)
    now[0] += 0.5
    assert buckets.take("k") == 0 and buckets.take("k") > 0
    now[0] += 60  # a long pause refills to the burst, no further
    assert [buckets.take("k") == 0 for _ in range(3)] == [True, True, False]


def test_the_table_has_a_fixed_size_whatever_the_number_of_keys(tmp_path):
    path = tmp_path / "table"
    create_table(path, slots=16)
    buckets = TokenBuckets(rate=1, burst=1, slots=16, path=path, clock=lambda: 0.0)
    taken = [buckets.take(f"client:{n}") for n in range(1000)]
    assert path.stat().st_size == 16 * SLOT.size
    assert sum(t == 0 for t in taken) <= 16  # colliding keys share a bucket: stricter, never looser
    with pytest.raises(ValueError, match="rate_limit_slots"):
        TokenBuckets(rate=1, burst=1, slots=32, path=path)


def _take_many(path: str, slots: int, key: str, count: int, accepted) -> None:
    buckets = TokenBuckets(rate=0.001, burst=100, slots=slots, path=path)
    accepted.put(sum(buckets.take(key) == 0 for _ in range(count)))


def test_processes_sharing_the_table_share_one_budget():
    """Four processes take 80 tokens each from one key's bucket of 100: 100 are granted in total,
    where buckets of their own would have granted 320."""
    with shared_table(slots=1024) as path:
        assert table_from_environment() == path
        context = multiprocessing.get_context("spawn")  # as uvicorn starts its workers
        accepted = context.Queue()
        workers = [context.Process(target=_take_many, args=(str(path), 1024, "key:k1", 80, accepted))
                   for _ in range(4)]
        for worker in workers:
            worker.start()
        totals = [accepted.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(timeout=30)
    assert sum(totals) == 100
    assert not path.exists() and table_from_environment() is None


def test_a_short_secret_is_refused_at_load():
    with pytest.raises(ValueError, match="at least 32 characters"):
        ServingSettings(user_token_secret=SecretStr("short"))


def test_hybridrec_feed_calls_in_process_as_the_user_with_credentials_of_its_own():
    """`hybridrec feed` (and the quick start's closing feeds) show the user's own view, without needing
    the served API's key or secret, and what it makes up is valid for that user only."""
    from hybridrec.config import Settings
    from hybridrec.serving.commands import _as_the_user

    settings, headers = _as_the_user(Settings(), "u-alice")
    caller = Authorizer(settings.serving).check(headers["X-API-Key"], "local", False,
                                                headers["Authorization"].removeprefix("Bearer "))
    assert caller.has_key and caller.is_user("u-alice") and not caller.is_user("u-bob")
    assert settings.serving.read_requires_key and Settings().serving.api_keys == []
