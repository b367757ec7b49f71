"""Watch one user's real-time context change while their recorded activity is replayed.

Runs a replay and a context updater side by side in this process, picks the busiest user of the
replayed stretch (or the one asked for), and prints a line each time serving would see something
new: the session, recent engaged and skipped items, search interests, the interest embedding.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from hybridrec.bus import EventBus
from hybridrec.config import Settings
from hybridrec.contract import EVENTS, SEARCH_QUERIES
from hybridrec.infra.kafka import ensure_topics
from hybridrec.lake import Lake
from hybridrec.streaming.context_store import ContextStore
from hybridrec.streaming.replay import in_time_order, lake_days, replay
from hybridrec.streaming.updater import build_updater

WATCH_EVERY_S = 0.2
CATCH_UP_S = 5.0  # keep watching this long after the replay ends


def describe(doc: dict[str, Any], items: int = 3) -> str:
    """One line of what serving sees in a context."""
    session = doc.get("session") or {}
    parts = [f"events {doc['events_applied']}, queries {doc['queries_applied']}"]
    if session:
        location = session.get("location")
        where = f" at {location['lat']:.4f},{location['lon']:.4f}" if location else ""
        parts.append(f"session {session['surface']} x{session['events']} pos {session.get('position', '-')}{where}")
    parts.append("engaged " + (", ".join(f"{e['item_id']}({e['event_type']})" for e in doc["engaged"][:items]) or "-"))
    parts.append("skipped " + (", ".join(e["item_id"] for e in doc["skipped"][:items]) or "-"))
    parts.append("searched " + (", ".join(f"{t['tag']} {t['weight']:.2f}" for t in doc["search_tags"][:items]) or "-"))
    if "interest" in doc:
        parts.append(f"interest {len(doc['interest']['vector'])}-d w={doc['interest']['weight']:.2f}")
    return " | ".join(parts)


def run_demo(settings: Settings, seconds: float = 30.0, rate: float = 500.0, user_id: str | None = None,
             emit: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Replay ``seconds`` of activity at ``rate``/s and print ``user_id``'s context as it changes."""
    ensure_topics(settings)
    lake = Lake(settings)
    stretch = list(itertools.islice(in_time_order(lake_days(lake, EVENTS), lake_days(lake, SEARCH_QUERIES)),
                                    int(seconds * rate)))
    if not stretch:
        raise RuntimeError("no recorded events in the lake: run `hybridrec generate` first")
    user_id = user_id or Counter(row["user_id"] for _, row in stretch).most_common(1)[0][0]
    emit(f"replaying {len(stretch)} recorded messages at {rate:.0f}/s; watching user {user_id}")

    stop = threading.Event()
    updater = build_updater(settings, instance_id=None)
    updater.step(stop)  # join the group first, so the replay is followed live rather than caught up in a burst
    updater_thread = threading.Thread(target=updater.run, args=(stop,), name="context-updater", daemon=True)
    updater_thread.start()
    serving = ContextStore.from_settings(settings)  # its own client, as serving would have
    bus = EventBus(settings, client_id="hybridrec-demo")
    suffix = f"demo{int(time.time())}"
    replay_thread = threading.Thread(target=replay, args=(bus, iter(stretch), rate, suffix), name="replay", daemon=True)
    replay_thread.start()

    last_seen, doc, replay_ended = None, None, None
    try:
        while replay_ended is None or time.monotonic() - replay_ended < CATCH_UP_S:
            doc = serving.get(user_id)
            seen = (doc["events_applied"], doc["queries_applied"]) if doc else None
            if seen != last_seen:
                emit(f"{time.strftime('%H:%M:%S')} {user_id}: {describe(doc)}")
                last_seen = seen
            if replay_ended is None and not replay_thread.is_alive():
                replay_ended = time.monotonic()
            time.sleep(WATCH_EVERY_S)
    finally:
        stop.set()
        replay_thread.join(timeout=5)
        updater_thread.join(timeout=10)
        bus.close()
    return doc
