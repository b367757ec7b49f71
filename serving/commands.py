"""What the `hybridrec serve` and `hybridrec feed` verbs run."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Callable

from pydantic import SecretStr

from hybridrec.config import Settings
from hybridrec.serving.auth import API_KEY_HEADER, sign_user_token
from hybridrec.serving.ratelimit import shared_table

log = logging.getLogger(__name__)

# Named rather than "auto": without uvloop and httptools installed the server should fail to start,
# not run on asyncio's loop and h11 at more CPU per request than the latency budget allows.
UVICORN_OPTIONS = {"loop": "uvloop", "http": "httptools", "log_level": "warning", "access_log": False}


def listening_socket(host: str, port: int) -> socket.socket:
    """The workers' shared listener, bound as uvicorn binds it but with ``proto`` IPPROTO_TCP.

    Accepted connections inherit ``proto``, and asyncio turns on TCP_NODELAY only where it is
    IPPROTO_TCP; uvicorn's own ``--workers`` listener leaves it 0 (uvicorn issue #3149), so every
    keep-alive response after the first waited ~40 ms for the client's delayed ACK (Nagle)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _supervisor(config, sockets: list[socket.socket], metrics_dir: str):
    """Uvicorn's worker supervisor that hands each replaced worker's live-gauge files back
    (prometheus_client's ``mark_process_dead``, what its docs have gunicorn's ``child_exit`` do)."""
    from prometheus_client.multiprocess import mark_process_dead
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        def _reap(self, before: set[int | None]) -> None:
            for pid in before - {p.pid for p in self.processes}:
                if pid is not None:
                    mark_process_dead(pid, metrics_dir)

        def keep_subprocess_alive(self) -> None:
            before = {p.pid for p in self.processes}
            super().keep_subprocess_alive()
            self._reap(before)

        def restart_all(self) -> None:
            before = {p.pid for p in self.processes}
            super().restart_all()
            self._reap(before)

        def handle_ttou(self) -> None:
            before = {p.pid for p in self.processes}
            super().handle_ttou()
            self._reap(before)

    return Supervisor(config, sockets=sockets)


def serve(settings: Settings) -> None:
    """Run the API with uvicorn (``serving.workers`` processes, each with its own app).

    Several workers share one metrics directory (prometheus_client's multiprocess mode, see
    :mod:`hybridrec.serving.metrics`): a fresh one per start, set in the environment before the
    workers are spawned (they inherit it) and removed when the server stops."""
    import uvicorn

    from hybridrec.serving.metrics import MULTIPROCESS_DIR_ENV

    cfg = settings.serving
    log.info("feed API on http://%s:%d (docs at /docs)", cfg.host, cfg.port)
    if not cfg.api_keys:
        log.warning("no serving.api_keys: writes%s will answer 403; set HYBRIDREC__SERVING__API_KEYS='[\"<key>\"]'",
                    " and reads" if cfg.read_requires_key else "")
    if cfg.processes > 1:  # worker processes import the app themselves: they read the same config
        config = uvicorn.Config("hybridrec.serving.asgi:app", host=cfg.host, port=cfg.port, workers=cfg.processes,
                                **UVICORN_OPTIONS)
        metrics_dir = tempfile.mkdtemp(prefix="hybridrec-metrics-")
        os.environ[MULTIPROCESS_DIR_ENV] = metrics_dir
        try:
            with shared_table(cfg.rate_limit_slots):  # one rate-limit budget for all workers
                _supervisor(config, [listening_socket(cfg.host, cfg.port)], metrics_dir).run()
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    else:
        from hybridrec.serving.app import create_app

        uvicorn.run(create_app(settings), host=cfg.host, port=cfg.port, **UVICORN_OPTIONS)


def _as_the_user(settings: Settings, user_id: str) -> tuple[Settings, dict[str, str]]:
    """Settings and headers of an in-process caller holding a key and the user's own claim, both made up
    for this one process: nobody else can use them. The operator sees the feed as the user would (the
    same data ``hybridrec stream show`` prints); the served API's keys and secret are not needed."""
    key, secret = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
    serving = settings.serving.model_copy(update={"api_keys": [key], "user_token_secret": SecretStr(secret)})
    token = sign_user_token(secret, user_id, ttl_s=300, audience=serving.user_token_audience)
    return settings.model_copy(update={"serving": serving}), {API_KEY_HEADER: key, "Authorization": f"Bearer {token}"}


def print_feed(settings: Settings, user_id: str, surface: str, limit: int, emit: Callable[[str], None]) -> dict:
    """One feed through the real pipeline (no HTTP), printed for people as the user sees it (personal
    reasons); returns the response body."""
    from fastapi.testclient import TestClient

    from hybridrec.serving.app import create_app

    logging.getLogger("httpx").setLevel(logging.WARNING)  # its per-request INFO line is noise in a printed feed
    settings, headers = _as_the_user(settings, user_id)
    with TestClient(create_app(settings, warm_item_cache=False)) as client:  # returns once warm (or given up)
        if not client.app.state.warm_up.done:
            emit("note: the server could not get warm (see the log); this feed may be degraded")
        response = client.get(f"/v1/feed/{user_id}", params={"surface": surface, "limit": limit}, headers=headers)
    body = response.json()
    if response.status_code != 200:
        raise RuntimeError(f"feed for {user_id} failed ({response.status_code}): {body.get('error')}")
    state = "DEGRADED (fallback list, not personalised)" if body["degraded"] else f"segment {body['segment']}"
    emit(f"{surface} feed for {user_id} — run {body['run_id']}, variant {body['experiment_variant']}, {state}")
    emit(f"  sources: {', '.join(f'{k}={v}' for k, v in body['sources_answered'].items())}; "
         f"timings ms: {body['timings_ms']}")
    for item in body["items"]:
        title = item["title"] or item["item_id"]
        emit(f"  {item['position']:>2}. {title[:40]:<40} {item['topic_path'] or '':<24} {item['reason']}")
    return body
