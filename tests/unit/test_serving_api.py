"""The API against an unreachable OpenSearch: degraded feeds from the fallback file, 4xx for bad input, no 5xx;
response bodies held to the declared schemas; access by key and user claim."""

import asyncio
import json
import socket

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st

from hybridrec.config import load_settings
from hybridrec.serving.app import create_app
from hybridrec.serving.auth import sign_user_token
from hybridrec.serving.commands import listening_socket
from hybridrec.serving.schemas import FeedResponse, Health, Problem, Readiness

KEY = {"X-API-Key": "k1"}
SECRET = "unit-test-user-token-secret-0123456789"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    (home / "models").mkdir()
    (home / "models" / "popular-fallback.json").write_text(json.dumps(
        {"run_id": "run-x", "place": {"all": ["p1", "p2", "p3"]}, "clip": {"all": ["c1", "c2"]}}))
    settings = load_settings(environ={"HYBRIDREC__HOME": str(home), "HYBRIDREC__OPENSEARCH__PORT": "1",
                                      "HYBRIDREC__KAFKA__PORT": "2", "HYBRIDREC__SERVING__API_KEYS": "[k1]",
                                      "HYBRIDREC__SERVING__USER_TOKEN_SECRET": SECRET,
                                      "HYBRIDREC__SERVING__SEARCH_TIMEOUT_S": "0.5"})
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_feed_degrades_to_the_fallback_list_and_says_so(client):
    response = client.get("/v1/feed/u1", params={"surface": "clip", "limit": 5}, headers=KEY)
    body = response.json()
    assert response.status_code == 200 and body["degraded"] is True
    FeedResponse.model_validate(body)  # the orjson fast path sends what /docs declares, nothing more
    assert [i["item_id"] for i in body["items"]] == ["c1", "c2"] and body["run_id"] == "run-x"
    metrics = client.get("/metrics").text
    assert 'hybridrec_feed_degraded_responses_total{reason=' in metrics
    assert f'hybridrec_feeds_total{{degraded="true",surface="clip",variant="{body["experiment_variant"]}"}}' in metrics


@pytest.mark.parametrize("params, status, words", [
    ({"surface": "video"}, 422, "surface"),
    ({"surface": "clip", "limit": 0}, 422, "limit"),
    ({"surface": "clip", "lat": 91, "lon": 0}, 422, "lat"),
    ({"surface": "clip", "lat": 10}, 422, "lat and lon"),
    ({"surface": "clip", "colour": "red"}, 400, "colour"),
])
def test_bad_feed_input_is_a_4xx_that_names_the_problem(client, params, status, words):
    response = client.get("/v1/feed/u1", params=params, headers=KEY)
    assert response.status_code == status and words in Problem.model_validate(response.json()).error


def test_writes_need_a_key_and_reject_unknown_fields(client):
    event = {"event_id": "e1", "user_id": "u1", "surface": "clip", "event_type": "click", "ts": "2026-11-24T00:00:00Z"}
    assert client.post("/v1/events", json={"events": [event]}).status_code == 401
    bad = client.post("/v1/events", json={"events": [{**event, "colour": 1}]}, headers={"X-API-Key": "k1"})
    assert bad.status_code == 422 and "colour" in bad.json()["error"]
    naive = client.post("/v1/events", json={"events": [{**event, "ts": "2026-11-24T00:00:00"}]},
                        headers={"X-API-Key": "k1"})
    assert naive.status_code == 422 and "time zone" in naive.json()["error"]
    assert client.post("/v1/events", json={"events": [event]}, headers={"X-API-Key": "k1"}).status_code == 503


def test_readiness_reports_what_is_missing(client):
    response = client.get("/readyz")
    assert response.status_code == 503 and Readiness.model_validate(response.json()).checks["opensearch"] is False
    assert response.json()["config_match"] == {"place": None, "clip": None}  # no run loaded to compare
    assert client.get("/healthz").status_code == 200 and Health.model_validate(client.get("/healthz").json())


@hyp_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=st.text(st.characters(categories=["L", "N", "P", "S"], exclude_characters="/?#%\\"), max_size=20), surface=st.sampled_from(["place", "clip", "", "x"]),
       limit=st.one_of(st.none(), st.integers(-5, 500), st.text(max_size=4)),
       lat=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4)))
def test_fuzzed_feed_requests_never_5xx(client, user, surface, limit, lat):
    params = {k: v for k, v in {"surface": surface, "limit": limit, "lat": lat, "lon": 0}.items() if v is not None}
    response = client.get(f"/v1/feed/{user}", params=params, headers=KEY)
    assert response.status_code < 500 or response.status_code == 503, response.text


def test_an_unexpected_error_is_a_logged_counted_500_without_internals(client, monkeypatch):
    def broken(query, arrived=None):
        raise ValueError("secret internals")

    monkeypatch.setattr(client.app.state.pipeline, "feed", broken)
    response = client.get("/v1/feed/u1", params={"surface": "clip"}, headers=KEY)
    assert response.status_code == 500 and "secret" not in response.text
    assert 'hybridrec_errors_total{route="/v1/feed/{user_id}"} 1.0' in client.get("/metrics").text


def test_reads_need_an_api_key_by_default(client):
    for headers in ({}, {"X-API-Key": "k2"}):
        response = client.get("/v1/feed/u1", params={"surface": "clip"}, headers=headers)
        assert response.status_code == 401 and "X-API-Key" in Problem.model_validate(response.json()).error
    assert client.get("/v1/items/c1/similar", params={"surface": "clip"}).status_code == 401


def test_only_the_users_own_claim_unlocks_personal_reasons(client, monkeypatch):
    """The route asks the pipeline for personal reasons only when a valid claim names the feed's user;
    which reasons the pipeline then writes is tested in test_serving_rules."""
    asked = []

    def recording(query, arrived=None):
        asked.append(query.personal_reasons)
        return {"items": []}

    monkeypatch.setattr(client.app.state.pipeline, "feed", recording)
    alice = {"Authorization": f"Bearer {sign_user_token(SECRET, 'u-alice', ttl_s=60)}"}
    for user, headers in (("u-alice", {}), ("u-alice", alice), ("u-bob", alice)):
        assert client.get(f"/v1/feed/{user}", params={"surface": "clip"}, headers={**KEY, **headers}).status_code == 200
    assert asked == [False, True, False]
    forged = {"Authorization": f"Bearer {sign_user_token('not-the-secret-0123456789abcdef-xyz', 'u-bob', ttl_s=60)}"}
    response = client.get("/v1/feed/u-bob", params={"surface": "clip"}, headers={**KEY, **forged})
    assert response.status_code == 401 and "user token" in response.json()["error"] and len(asked) == 3


def test_openapi_declares_every_response_body_and_both_credentials(client):
    spec = client.get("/openapi.json").json()
    assert {"ApiKey", "UserToken"} <= set(spec["components"]["securitySchemes"])
    assert spec["components"]["securitySchemes"]["UserToken"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": spec["components"]["securitySchemes"]["UserToken"]["description"]}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                schema = response["content"]["application/json"]["schema"]
                assert "$ref" in schema, (method, path, status, schema)
                if status.startswith(("4", "5")) and path != "/readyz":
                    assert schema["$ref"].endswith("/Problem"), (method, path, status)
            if path.startswith("/v1/"):  # the key is required (not an alternative); the user claim comes on top
                expected = [{"ApiKey": []}] if method == "post" else [{"ApiKey": []}, {"ApiKey": [], "UserToken": []}]
                assert operation["security"] == expected, (method, path)
    feed = spec["paths"]["/v1/feed/{user_id}"]["get"]
    assert feed["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/FeedResponse")
    assert spec["components"]["schemas"]["FeedResponse"]["examples"]


def test_the_workers_listener_gives_connections_tcp_nodelay():
    """uvicorn's own --workers listener does not (its proto is 0), which cost ~40 ms per keep-alive request."""
    async def accepted_nodelay() -> int:
        listener = listening_socket("127.0.0.1", 0)
        accepted: asyncio.Future = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname())
        try:
            return await asyncio.wait_for(accepted, 5)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accepted_nodelay()) == 1


def test_hybridrec_feed_prints_a_feed_under_the_default_private_config(tmp_path):
    """`hybridrec feed` and the quick start's closing feeds go through the access check like any caller,
    with no key configured for the served API."""
    from hybridrec.serving.commands import print_feed

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "popular-fallback.json").write_text(json.dumps(
        {"run_id": "run-x", "place": {"all": ["p1"]}, "clip": {"all": ["c1", "c2", "c3"]}}))
    settings = load_settings(environ={"HYBRIDREC__HOME": str(tmp_path), "HYBRIDREC__OPENSEARCH__PORT": "1",
                                      "HYBRIDREC__KAFKA__PORT": "2", "HYBRIDREC__SERVING__SEARCH_TIMEOUT_S": "0.5"})
    assert settings.serving.read_requires_key and not settings.serving.api_keys
    lines: list[str] = []
    body = print_feed(settings, "u1", "clip", 2, lines.append)
    assert lines[0].startswith("note: the server could not get warm")  # OpenSearch is unreachable here
    assert body["degraded"] is True and len(body["items"]) == 2 and "clip feed for u1" in lines[1]
