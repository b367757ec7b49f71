"""The feeds, one day at a time: sessions of impressions, what users did with each, and search activity.

Everything is vectorised over the day's impressions; a day's events are one Arrow table, so memory
stays bounded by the busiest day whatever ``n_events`` is. The day budgets adapt to what earlier
days produced, so the total lands close to ``n_events``.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hybridrec.synthetic.catalog import Catalog
from hybridrec.synthetic.common import (
    DAY_US, REGION_LAT, REGION_LON, REGIONS, SECOND_US, Window, format_ids, jitter, sample_rows, stream, timestamps,
)
from hybridrec.synthetic.content import QueryLog
from hybridrec.synthetic.entities import Tastes, Topics, Users
from hybridrec.config import SyntheticSettings
from hybridrec.contract import EVENT_TYPES, EVENTS, SURFACES, EventType, Surface

PLACE, CLIP = SURFACES.index(Surface.PLACE.value), SURFACES.index(Surface.CLIP.value)
CODE = {e: EVENT_TYPES.index(e.value) for e in EventType}
INTEREST, POPULAR, EXPLORE = 0, 1, 2

SESSION_LENGTH = {PLACE: 6, CLIP: 12}  # mean impressions per session
PAGE_SIZE = np.array([20, 10])  # by surface: a map response shows more pins than a clip feed page
EXPLORE_SHARE = 0.08
REDRAWS = 3
AWAY_FROM_HOME = 0.2  # map sessions opened in another neighbourhood
WEEKEND_BOOST = 1.15
KST_HOURS = 9
# When people open the app, by local hour: a lunch bump and a long evening.
LOCAL_HOUR_WEIGHTS = np.array([3, 2, 1, 1, 1, 1, 2, 4, 6, 6, 6, 7, 9, 8, 6, 6, 6, 7, 9, 11, 12, 12, 10, 6], dtype=float)
# P(action) = base + slope * affinity of the item to the user's interests, per surface (place, clip).
ACTION_CHANCE = {
    "open": ((0.06, 0.45), (0.12, 0.65)),  # open a place's page / watch a clip instead of skipping it
    "read": ((0.85, 0.0), (1.0, 0.0)),  # an opened place page stays long enough to count as dwell
    "like": ((0.0, 0.0), (0.04, 0.30)),
    "save": ((0.03, 0.20), (0.01, 0.07)),
    "share": ((0.01, 0.05), (0.005, 0.04)),
    "visit": ((0.04, 0.25), (0.0, 0.0)),
}
FAR_VISIT_FACTOR = 0.25  # visits to a place outside the session's neighbourhood are rarer
_DEFAULTS = {"user": -1, "item": -1, "surface": 0, "etype": 0, "dwell_ms": -1, "position": -1, "session": -1,
             "page": 0, "query": -1, "lat": np.nan, "lon": np.nan, "ts": 0}


def _rows(n: int, **columns: np.ndarray) -> dict[str, np.ndarray]:
    """Event rows as parallel numpy columns; unspecified columns take their null/default value."""
    return {k: np.broadcast_to(columns[k], n) if k in columns else np.full(n, d) for k, d in _DEFAULTS.items()}


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in _DEFAULTS}


class EventSimulator:
    def __init__(self, cfg: SyntheticSettings, window: Window, topics: Topics, users: Users, catalog: Catalog,
                 queries: QueryLog, tastes: Tastes) -> None:
        self.cfg, self.window, self.topics, self.users = cfg, window, topics, users
        self.catalog, self.queries, self.tastes = catalog, queries, tastes
        self.warm = np.flatnonzero(~users.cold)
        self.warm_p = users.activity[self.warm] / users.activity[self.warm].sum()
        self.n_places = len(catalog.places)
        self.item_ids = pa.concat_arrays([catalog.places.ids, catalog.clips.ids])
        self.query_day = (queries.ts_us - window.start_us) // DAY_US
        clip_share = float(self.warm_p @ users.clip_share[self.warm])
        self.session_length = clip_share * SESSION_LENGTH[CLIP] + (1 - clip_share) * SESSION_LENGTH[PLACE]

    def days(self) -> Iterator[pa.Table]:
        """One table per day; later days make up for earlier ones so the total is close to ``n_events``."""
        days = range(self.window.n_days)
        day_weight = np.array([WEEKEND_BOOST if self.window.weekday(d) >= 5 else 1.0 for d in days])
        remaining, produced, sessions, next_event = self.cfg.n_events, 0, 0, 0
        events_per_session = 1.6 * self.session_length
        for day in days:
            rng = stream(self.cfg.seed, "events", day)
            budget = remaining * day_weight[day] / day_weight[day:].sum()
            search = self._search_rows(day)
            n_sessions = max(1, round((budget - len(search["ts"])) / events_per_session))
            feed = self._feed_rows(rng, day, n_sessions, sessions)
            sessions += n_sessions
            produced += len(feed["ts"])
            events_per_session = max(produced / sessions, 1.0)
            table = self._table(_concat([search, feed]), next_event)
            next_event += table.num_rows
            remaining -= table.num_rows
            yield table

    def _search_rows(self, day: int) -> dict[str, np.ndarray]:
        """A search event per query of a warm user that day, then a click per opened result, 15 s apart."""
        q = self.queries
        asked = np.flatnonzero((self.query_day == day) & ~self.users.cold[q.user])
        on_place = q.on_place[asked]
        lat = np.where(on_place, self.users.lat[q.user[asked]], np.nan)
        lon = np.where(on_place, self.users.lon[q.user[asked]], np.nan)
        searches = _rows(len(asked), user=q.user[asked], surface=np.where(on_place, PLACE, CLIP),
                         etype=CODE[EventType.SEARCH], query=asked, lat=lat, lon=lon, ts=q.ts_us[asked])
        picked = np.flatnonzero(np.isin(q.click_query, asked))
        query = q.click_query[picked]
        ordinal = np.arange(len(picked)) - np.searchsorted(query, query)
        item = q.click_item[picked] + np.where(q.on_place[query], 0, self.n_places)
        clicks = _rows(len(picked), user=q.user[query], item=item,
                       surface=np.where(q.on_place[query], PLACE, CLIP), etype=CODE[EventType.CLICK],
                       position=q.click_rank[picked], query=query, ts=q.ts_us[query] + (ordinal + 1) * 15 * SECOND_US)
        return _concat([searches, clicks])

    def _feed_rows(self, rng: np.random.Generator, day: int, n_sessions: int,
                   first_session: int) -> dict[str, np.ndarray]:
        users, day_start = self.users, self.window.day_start(day)
        user = rng.choice(self.warm, size=n_sessions, p=self.warm_p)
        surface = np.where(rng.random(n_sessions) < users.clip_share[user], CLIP, PLACE)
        length = 1 + rng.poisson(np.where(surface == CLIP, SESSION_LENGTH[CLIP], SESSION_LENGTH[PLACE]) - 1)
        away = (surface == PLACE) & (rng.random(n_sessions) < AWAY_FROM_HOME)
        region = np.where(away, rng.integers(0, len(REGIONS), n_sessions), users.region[user])

        session, item = self._fill_slots(rng, day, np.repeat(np.arange(n_sessions), length), user, surface, region)
        position = np.arange(len(session)) - np.searchsorted(session, session)
        s_user, s_surface = user[session], surface[session]
        imp = self._outcomes(rng, s_surface, item, self._affinity(day, s_user, s_surface, item))
        t0, session_end = self._clock(rng, session, imp["span_ms"], n_sessions, day_start)

        home_lat, home_lon = jitter(rng, users.lat[user], users.lon[user], km=0.3)
        out_lat, out_lon = jitter(rng, REGION_LAT[region], REGION_LON[region], km=2.0)
        lat = np.where(surface == PLACE, np.where(away, out_lat, home_lat), np.nan)[session]
        lon = np.where(surface == PLACE, np.where(away, out_lon, home_lon), np.nan)[session]
        slots = dict(user=s_user, item=item + np.where(s_surface == PLACE, 0, self.n_places), surface=s_surface,
                     position=position % PAGE_SIZE[s_surface], page=position // PAGE_SIZE[s_surface],
                     session=first_session + session, lat=lat, lon=lon)
        return _concat([_impression_events(slots, imp, t0),
                        self._visits(rng, imp["visit"], slots, region[session], session_end[session], day_start)])

    def _fill_slots(self, rng: np.random.Generator, day: int, session: np.ndarray, user: np.ndarray,
                    surface: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """An item per slot; a feed never repeats an item within a session, so repeats are backfilled
        (a few rounds) and whatever still repeats is dropped."""
        day_start = self.window.day_start(day)
        item = self._choose(rng, day, user[session], surface[session], region[session], day_start)
        for _ in range(REDRAWS):
            again = _repeated(session, item)
            if not again.any():
                break
            s = session[again]
            item[again] = self._choose(rng, day, user[s], surface[s], region[s], day_start)
        kept = ~_repeated(session, item)
        return session[kept], item[kept]

    @staticmethod
    def _clock(rng: np.random.Generator, session: np.ndarray, span_ms: np.ndarray, n_sessions: int,
               day_start: int) -> tuple[np.ndarray, np.ndarray]:
        """When each impression was shown, and when each session ended: sessions start at a local hour
        drawn from the daily profile and end before midnight UTC, so a day's events stay in its table."""
        span = np.bincount(session, weights=span_ms, minlength=n_sessions).astype(np.int64) * 1000
        local_hour = rng.choice(24, size=n_sessions, p=LOCAL_HOUR_WEIGHTS / LOCAL_HOUR_WEIGHTS.sum())
        start = ((local_hour - KST_HOURS) % 24) * 3600 * SECOND_US + rng.integers(0, 3600 * SECOND_US, n_sessions)
        start = day_start + np.minimum(start, DAY_US - 2 * SECOND_US - span)
        offset_ms = np.cumsum(span_ms) - span_ms
        t0 = start[session] + (offset_ms - offset_ms[np.searchsorted(session, session)]) * 1000
        return t0, start + span

    def _choose(self, rng: np.random.Generator, day: int, user: np.ndarray, surface: np.ndarray, region: np.ndarray,
                day_start: int) -> np.ndarray:
        """Per slot: one of the user's interests (by weight), the popular items, or anything (exploration)."""
        users, catalog = self.users, self.catalog
        draw = rng.random(len(user))
        source = np.where(draw < users.interest_share[user], INTEREST,
                          np.where(draw < 1 - EXPLORE_SHARE, POPULAR, EXPLORE))
        held = users.topics[user]
        weights = users.active_weights(user, day)
        item = np.empty(len(user), dtype=np.int64)

        c = np.flatnonzero(surface == CLIP)
        now = np.full(len(c), day_start)
        clip_topic = held[c, sample_rows(rng, weights[c])]
        chosen = catalog.random_clips(rng, now)
        on_topic = source[c] == INTEREST
        chosen[on_topic] = catalog.clips_on_topic(rng, clip_topic[on_topic], now[on_topic])
        popular = (source[c] == POPULAR) | (chosen < 0)  # also when no clip has that topic
        chosen[popular] = catalog.popular_clips(rng, now[popular])
        item[c] = chosen

        p = np.flatnonzero(surface == PLACE)
        food_weights = weights[p] * self.topics.is_food[np.maximum(held[p], 0)]
        slot = sample_rows(rng, food_weights)
        place_topic = np.where(slot >= 0, held[p, np.maximum(slot, 0)], -1)
        chosen = rng.integers(0, self.n_places, len(p))
        on_topic = (source[p] == INTEREST) & (place_topic >= 0)
        chosen[on_topic] = catalog.places_on_topic(rng, place_topic[on_topic], region[p][on_topic])
        popular = ((source[p] != EXPLORE) & ~on_topic) | (chosen < 0)
        chosen[popular] = catalog.popular_places(rng, region[p][popular])
        item[p] = chosen
        return item

    def _affinity(self, day: int, user: np.ndarray, surface: np.ndarray, item: np.ndarray) -> np.ndarray:
        """1 if the item's topic is an interest in force, SIBLING_AFFINITY if a sibling is, else 0; for a
        place, ``taste_weight`` of that depends on the share of the user's tastes the place has."""
        place = surface == PLACE
        place_item = np.where(place, item, 0)
        item_topic = np.where(place, self.catalog.places.category[place_item],
                              self.catalog.clips.topic[np.where(surface == CLIP, item, 0)])
        held = self.users.topics[user]
        in_force = self.users.active_weights(user, day) > 0
        topical = (self.topics.affinity[np.maximum(held, 0), item_topic[:, None]] * in_force).max(axis=1)
        weight = self.cfg.taste_weight
        taste = np.where(place, 1.0 - weight + weight * self.tastes.match(user, place_item), 1.0)
        return topical * taste

    def _outcomes(self, rng: np.random.Generator, surface: np.ndarray, item: np.ndarray,
                  affinity: np.ndarray) -> dict[str, np.ndarray]:
        """What happened to each impression, and when (milliseconds after it was shown)."""
        n, clip = len(item), surface == CLIP
        chance = {action: rng.random(n) < np.array(params)[surface, 0] + np.array(params)[surface, 1] * affinity
                  for action, params in ACTION_CHANCE.items()}
        duration_ms = self.catalog.clips.duration_s[np.where(clip, item, 0)] * 1000
        watch_ms = np.maximum(1000, rng.beta(1.5 + 3.0 * affinity, 2.0) * duration_ms).astype(np.int64)
        detail_ms = np.clip(rng.lognormal(np.log(20_000), 0.7, n), 2_000, 300_000).astype(np.int64)
        first_ms = np.where(clip, rng.integers(300, 2_500, n), rng.integers(800, 4_000, n))
        engaged_ms = np.where(clip, watch_ms, first_ms + detail_ms)
        opened = chance["open"]
        outcome = {name: opened & chance[name] for name in ("read", "like", "save", "share", "visit")}
        return {
            **outcome, "open": opened, "first_ms": first_ms, "engaged_ms": engaged_ms,
            "dwell_ms": np.where(clip, watch_ms, detail_ms),
            "span_ms": np.where(opened, engaged_ms + 1_000, first_ms) + rng.integers(200, 800, n),
        }

    def _visits(self, rng: np.random.Generator, visit: np.ndarray, slots: dict[str, np.ndarray], region: np.ndarray,
                session_end: np.ndarray, day_start: int) -> dict[str, np.ndarray]:
        """Some opened places get visited after the session, mostly when they are in its neighbourhood."""
        place = np.where(slots["surface"] == PLACE, slots["item"], 0)
        far = self.catalog.places.region[place] != region
        visit = visit & ~(far & (rng.random(len(visit)) >= FAR_VISIT_FACTOR))
        idx = np.flatnonzero(visit)
        lat, lon = jitter(rng, self.catalog.places.lat[place[idx]], self.catalog.places.lon[place[idx]], km=0.03)
        delay = rng.integers(15 * 60 * SECOND_US, 120 * 60 * SECOND_US, len(idx))
        ts = np.minimum(session_end[idx] + delay, day_start + DAY_US - 1000)
        cols = {k: slots[k][idx] for k in ("user", "item", "surface", "position", "page", "session")}
        return _rows(len(idx), etype=CODE[EventType.VISIT], lat=lat, lon=lon, ts=ts, **cols)

    def _table(self, rows: dict[str, np.ndarray], first_event: int) -> pa.Table:
        """Sort the day by time (sessions are built in order, so each stays ordered) and spell the ids."""
        order = np.argsort(rows["ts"], kind="stable")
        r = {k: v[order] for k, v in rows.items()}
        n = len(order)
        from_feed = r["session"] >= 0
        feed_request = pc.binary_join_element_wise(format_ids("s", np.maximum(r["session"], 0), 9), "-p",
                                                   pc.cast(pa.array(r["page"]), pa.string()), "")
        query_id = self.queries.ids.take(pa.array(r["query"], mask=r["query"] < 0))
        return EVENTS.to_arrow({
            "event_id": format_ids("ev", np.arange(first_event, first_event + n), 10),
            "user_id": self.users.ids.take(pa.array(r["user"])),
            "item_id": self.item_ids.take(pa.array(r["item"], mask=r["item"] < 0)),
            "surface": pa.array(SURFACES).take(pa.array(r["surface"])),
            "event_type": pa.array(EVENT_TYPES).take(pa.array(r["etype"])),
            "dwell_ms": pa.array(r["dwell_ms"], mask=r["dwell_ms"] < 0, type=pa.int64()),
            "position": pa.array(r["position"], mask=r["position"] < 0, type=pa.int32()),
            "request_id": pc.if_else(pa.array(from_feed), feed_request, query_id),
            "experiment_variant": self.users.variant.take(pa.array(r["user"])),
            "query_id": query_id,
            "lat": pa.array(r["lat"], mask=np.isnan(r["lat"])),
            "lon": pa.array(r["lon"], mask=np.isnan(r["lon"])),
            "ts": timestamps(r["ts"]),
        })


def _impression_events(slots: dict[str, np.ndarray], imp: dict[str, np.ndarray],
                       t0: np.ndarray) -> dict[str, np.ndarray]:
    """View, then skip (clips) or click (places), dwell, like/save/share, each at its offset after the view."""

    def emit(mask: np.ndarray, etype: EventType, at_ms: np.ndarray, dwell_ms: np.ndarray | None = None):
        cols = {k: v[mask] for k, v in slots.items()}
        if dwell_ms is not None:
            cols["dwell_ms"] = dwell_ms[mask]
        return _rows(int(mask.sum()), etype=CODE[etype], ts=t0[mask] + at_ms[mask] * 1000, **cols)

    clip, opened, engaged = slots["surface"] == CLIP, imp["open"], imp["engaged_ms"]
    return _concat([
        emit(np.ones(len(t0), dtype=bool), EventType.VIEW, np.zeros(len(t0), dtype=np.int64)),
        emit(clip & ~opened, EventType.SKIP, imp["first_ms"], imp["first_ms"]),
        emit(~clip & opened, EventType.CLICK, imp["first_ms"]),
        emit(opened & imp["read"], EventType.DWELL, engaged, imp["dwell_ms"]),
        emit(imp["like"], EventType.LIKE, engaged + 300),
        emit(imp["save"], EventType.SAVE, engaged + 600),
        emit(imp["share"], EventType.SHARE, engaged + 900),
    ])


def _repeated(session: np.ndarray, item: np.ndarray) -> np.ndarray:
    """True for slots whose item was already shown earlier in the same session."""
    _, first = np.unique(session * (int(item.max(initial=0)) + 1) + item, return_index=True)
    repeated = np.ones(len(item), dtype=bool)
    repeated[first] = False
    return repeated
