"""What the `hybridrec serve` and `hybridrec feed` verbs run."""

from __future__ import annotations

import logging
from collections.abc import Callable

from hybridrec.config import Settings

log = logging.getLogger(__name__)


def serve(settings: Settings) -> None:
    """Run the API with uvicorn (``serving.workers`` processes, each with its own app)."""
    import uvicorn

    cfg = settings.serving
    log.info("feed API on http://%s:%d (docs at /docs)", cfg.host, cfg.port)
    if cfg.workers > 1:  # worker processes import the app themselves: they read the same config
        uvicorn.run("hybridrec.serving.asgi:app", host=cfg.host, port=cfg.port, workers=cfg.workers,
                    log_level="warning", access_log=False)
    else:
        from hybridrec.serving.app import create_app

        uvicorn.run(create_app(settings), host=cfg.host, port=cfg.port, log_level="warning", access_log=False)


def print_feed(settings: Settings, user_id: str, surface: str, limit: int, emit: Callable[[str], None]) -> dict:
    """One feed through the real pipeline (no HTTP), printed for people; returns the response body."""
    from fastapi.testclient import TestClient

    from hybridrec.serving.app import create_app

    logging.getLogger("httpx").setLevel(logging.WARNING)  # its per-request INFO line is noise in a printed feed
    with TestClient(create_app(settings, warm_item_cache=False)) as client:
        response = client.get(f"/v1/feed/{user_id}", params={"surface": surface, "limit": limit})
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
