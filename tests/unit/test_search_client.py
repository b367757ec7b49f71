"""The one OpenSearch client policy: what is retried, how long it waits, and that a feed is never retried.

A small local HTTP server stands in for OpenSearch and answers with scripted statuses, so the real
opensearch-py transport runs underneath the policy.
"""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opensearchpy.exceptions import ConnectionError, RequestError, TransportError

from hybridrec.config import load_settings
from hybridrec.search import ClientPolicy, opensearch_client

INFO = {"name": "node", "cluster_name": "c", "version": {"number": "2.19.1"}, "tagline": "t"}


@pytest.fixture
def server():
    """(port, statuses to answer in order (then 200), requests seen)."""
    script: list[int] = []
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            seen.append(self.path)
            status = script.pop(0) if script else 200
            body = json.dumps(INFO if status == 200 else {"error": "scripted", "status": status}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], script, seen
    httpd.shutdown()
    httpd.server_close()


def _settings(port: int, **overrides: str):
    env = {"HYBRIDREC__OPENSEARCH__PORT": str(port), **{f"HYBRIDREC__OPENSEARCH__{k.upper()}": v
                                                         for k, v in overrides.items()}}
    return load_settings(environ=env)


@pytest.fixture
def sleeps(monkeypatch):
    """The client's waits in this test's thread (``time.sleep`` is process-wide: threads left by other
    tests, a Kafka client's, keep sleeping for real and are not counted)."""
    waited: list[float] = []
    test_thread, real_sleep = threading.get_ident(), time.sleep

    def sleep(seconds: float) -> None:
        if threading.get_ident() == test_thread:
            waited.append(seconds)
        else:
            real_sleep(seconds)

    monkeypatch.setattr("hybridrec.search.time.sleep", sleep)
    return waited


def test_jobs_retry_an_unavailable_node_with_doubling_back_off(server, sleeps):
    port, script, seen = server
    script += [503, 502]
    client = opensearch_client(_settings(port, retries="3", retry_backoff_s="0.25"))
    assert client.info()["cluster_name"] == "c"
    assert len(seen) == 3 and sleeps == [0.25, 0.5]


def test_jobs_give_up_after_the_configured_retries(server, sleeps):
    port, script, seen = server
    script += [503] * 5
    with pytest.raises(TransportError) as err:
        opensearch_client(_settings(port, retries="2", retry_backoff_s="0.1")).info()
    assert err.value.status_code == 503 and len(seen) == 3 and sleeps == [0.1, 0.2]


def test_a_request_error_is_not_retried(server, sleeps):
    port, script, seen = server
    script.append(400)
    with pytest.raises(RequestError):
        opensearch_client(_settings(port, retries="3")).info()
    assert len(seen) == 1 and sleeps == []


def test_a_feed_request_with_a_deadline_is_never_retried(server, sleeps):
    port, script, seen = server
    script.append(503)
    client = opensearch_client(_settings(port, retries="3"), deadline_s=0.5)
    with pytest.raises(TransportError):
        client.info()
    assert len(seen) == 1 and sleeps == []
    assert client.transport.get_connection().timeout == 0.5


def test_a_refused_connection_is_retried_then_raised(sleeps):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionError):
        opensearch_client(_settings(port, retries="2", retry_backoff_s="0.01")).info()
    assert sleeps == [0.01, 0.02]


def test_policy_comes_from_the_opensearch_settings():
    settings = _settings(9200, timeout_s="7", retries="4", retry_backoff_s="1.5")
    assert ClientPolicy.from_settings(settings) == ClientPolicy(timeout_s=7.0, retries=4, backoff_s=1.5)
    assert ClientPolicy.from_settings(settings, deadline_s=0.2) == ClientPolicy(timeout_s=0.2, retries=0, backoff_s=0.0)
    assert opensearch_client(settings).transport.get_connection().timeout == 7.0
