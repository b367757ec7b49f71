"""Users with latent interests, places with true attributes, clips with topics: the world's nouns.

Each maker returns a compact numpy view (what the review, query and event simulators read) plus
the contract tables. Per-user work is vectorised; places and clips are few enough to loop over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from hybridrec.synthetic import text
from hybridrec.synthetic.common import (
    DAY_US, REGION_LAT, REGION_LON, REGION_WEIGHTS, REGIONS, SECOND_US, Window, format_ids, gumbel_top_k, id_width,
    jitter, opaque_ids, text_random, timestamps, zipf_weights,
)
from hybridrec.config import SyntheticSettings
from hybridrec.contract import CLIPS, PLACES, TRUTH_ITEM_TAGS, TRUTH_USER_INTERESTS, TRUTH_USER_TASTES, USERS
from hybridrec.taxonomy import Tag, Taxonomy

SIBLING_AFFINITY = 0.15  # a soccer fan now and then watches baseball, but it is not an interest
MAX_INTERESTS = 4
FOCUSED_SHARE = 0.15  # users with exactly one interest: the sharpest test of sibling separation
DRIFT_SHARE = 0.25
PLACE_ASPECT_COUNTS = {"mood": (1, 2), "purpose": (1, 2), "service": (0, 1), "facility": (0, 2)}
TYPICAL_BOOST = 5.0


@dataclass(frozen=True)
class Topics:
    """Topic leaves as integer codes, which every numpy array of the world refers to."""

    tags: tuple[Tag, ...]
    is_food: np.ndarray
    affinity: np.ndarray  # [interest, item]: 1 same topic, SIBLING_AFFINITY same parent, else 0
    prior: np.ndarray  # how popular each topic is in this world

    @classmethod
    def of(cls, taxonomy: Taxonomy, rng: np.random.Generator) -> "Topics":
        tags = taxonomy.leaves("topic")
        parents = np.array([t.parent_path or t.path for t in tags])
        affinity = np.where(parents[:, None] == parents[None, :], SIBLING_AFFINITY, 0.0)
        np.fill_diagonal(affinity, 1.0)
        return cls(tags, np.array([t.top == "food" for t in tags]), affinity, rng.dirichlet(np.full(len(tags), 2.0)))

    def __len__(self) -> int:
        return len(self.tags)


@dataclass(frozen=True)
class Users:
    ids: pa.Array
    region: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    korean: np.ndarray
    signup_us: np.ndarray
    cold: np.ndarray
    activity: np.ndarray  # relative number of feed sessions; 0 for cold users
    clip_share: np.ndarray  # share of sessions on the clip feed rather than the map
    interest_share: np.ndarray  # share of feed slots the user's interests decide
    topics: np.ndarray  # (users, MAX_INTERESTS + 1) topic codes, -1 = none; the last slot is for drift
    weights: np.ndarray
    from_day: np.ndarray
    variant: pa.Array

    def __len__(self) -> int:
        return len(self.region)

    def language(self, i: int) -> str:
        return "ko" if self.korean[i] else "en"

    def active_weights(self, rows: np.ndarray, day: int | np.ndarray) -> np.ndarray:
        """Interest weights of users ``rows`` in force on ``day`` (one day, or one per row)."""
        day = np.asarray(day)
        in_force = self.from_day[rows] <= (day[:, None] if day.ndim else day)
        return np.where(in_force, self.weights[rows], 0.0)


def user_ids(cfg: SyntheticSettings) -> pa.Array:
    """The world's user ids, row by row: opaque (``u`` + 16 hex digits), as a real service's would be."""
    return opaque_ids("u", cfg.seed, "users", cfg.n_users)


def make_users(cfg: SyntheticSettings, topics: Topics, window: Window, rng: np.random.Generator,
               variant_of: Callable[[str], str]) -> Users:
    """``variant_of``: the experiment arm of a user id (the feed API's assignment)."""
    n = cfg.n_users
    cold = np.zeros(n, dtype=bool)
    cold[rng.permutation(n)[: round(cfg.cold_user_share * n)]] = True
    region = rng.choice(len(REGIONS), size=n, p=REGION_WEIGHTS)
    lat, lon = jitter(rng, REGION_LAT[region], REGION_LON[region], km=2.0)
    signup_warm = window.start_us - rng.integers(DAY_US, 730 * DAY_US, n)
    signup_cold = window.end_us - rng.integers(SECOND_US * 3600, 7 * DAY_US, n)
    topic_codes, weights, from_day = _interests(n, ~cold, topics, window, rng)
    ids = user_ids(cfg)
    return Users(
        ids=ids, region=region, lat=lat, lon=lon, korean=rng.random(n) < 0.7,
        signup_us=np.where(cold, signup_cold, signup_warm), cold=cold,
        activity=np.where(cold, 0.0, rng.lognormal(0.0, 1.0, n)),
        clip_share=rng.beta(6.0, 2.5, n), interest_share=rng.beta(6.5, 3.5, n),
        topics=topic_codes, weights=weights, from_day=from_day,
        variant=pa.array([variant_of(u) for u in ids.to_pylist()], pa.string()),
    )


def _interests(n: int, can_drift: np.ndarray, topics: Topics, window: Window, rng: np.random.Generator):
    """2-4 interests with Dirichlet weights (some users only one); a quarter later pick up one more."""
    ranked = gumbel_top_k(rng, np.log(topics.prior), n, MAX_INTERESTS + 1)
    focused = rng.random(n) < FOCUSED_SHARE
    k = np.where(focused, 1, rng.integers(2, MAX_INTERESTS + 1, n))
    slots = np.arange(MAX_INTERESTS + 1)[None, :]
    held = slots < k[:, None]
    weights = np.where(held, rng.gamma(1.0, size=ranked.shape), 0.0)
    weights /= weights.sum(axis=1, keepdims=True)
    drift = can_drift & ~focused & (rng.random(n) < DRIFT_SHARE)
    drift_slot = (slots == k[:, None]) & drift[:, None]
    weights = np.where(drift_slot, rng.uniform(0.3, 0.6, n)[:, None], weights)
    drift_day = rng.integers(max(1, window.n_days // 4), max(2, 3 * window.n_days // 4), n)
    from_day = np.where(drift_slot, drift_day[:, None], 0)
    codes = np.where(held | drift_slot, ranked, -1)
    return codes, weights, from_day


def users_table(users: Users) -> pa.Table:
    return USERS.to_arrow({
        "user_id": users.ids,
        "home_region": pa.array([r.key for r in REGIONS]).take(pa.array(users.region)),
        "home_lat": users.lat, "home_lon": users.lon,
        "language": np.where(users.korean, "ko", "en"),
        "signup_at": timestamps(users.signup_us),
    })


def interests_table(users: Users, topics: Topics) -> pa.Table:
    row, slot = np.nonzero(users.topics >= 0)
    return TRUTH_USER_INTERESTS.to_arrow({
        "user_id": users.ids.take(pa.array(row)),
        "tag": pa.array([t.path for t in topics.tags]).take(pa.array(users.topics[row, slot])),
        "weight": users.weights[row, slot],
        "from_day": users.from_day[row, slot].astype(np.int32),
    })


@dataclass(frozen=True)
class Places:
    ids: pa.Array
    region: np.ndarray
    category: np.ndarray  # topic code
    lat: np.ndarray
    lon: np.ndarray
    quality: np.ndarray
    popularity: np.ndarray
    created_us: np.ndarray
    attributes: list[list[Tag]]  # true non-topic tags, what reviews are written from

    def __len__(self) -> int:
        return len(self.region)


# Opening hours by category family, as (open range, close range) in minutes; bars close after midnight.
_HOURS = {"food/cafe": ((480, 600), (1200, 1320)), "food/bar": ((1020, 1140), (1500, 1620))}
_DEFAULT_HOURS = ((660, 720), (1260, 1350))


def make_places(cfg: SyntheticSettings, taxonomy: Taxonomy, topics: Topics, window: Window,
                rng: np.random.Generator) -> tuple[Places, pa.Table, pa.Table]:
    n = cfg.n_places
    food = np.flatnonzero(topics.is_food)
    category = food[rng.choice(len(food), size=n, p=_normalised(topics.prior[food] + 0.02))]
    region = rng.choice(len(REGIONS), size=n, p=REGION_WEIGHTS)
    lat, lon = jitter(rng, REGION_LAT[region], REGION_LON[region], km=1.5)
    quality = rng.normal(0.0, 1.0, n)
    ids = format_ids("p", np.arange(n), id_width(n))
    rnd = text_random(rng)
    rows: dict[str, list] = {k: [] for k in ("name", "address", "price_level", "open_minute", "close_minute")}
    attributes, tag_rows = [], []
    for i in range(n):
        cat = topics.tags[category[i]]
        attrs = _place_attributes(rnd, taxonomy, cat)
        attributes.append(attrs)
        tag_rows += [(i, cat)] + [(i, t) for t in attrs]
        (open_lo, open_hi), (close_lo, close_hi) = _HOURS.get(cat.parent_path or "", _DEFAULT_HOURS)
        reg = REGIONS[region[i]]
        rows["name"].append(text.write_place_name(rnd, cat, rnd.choice(("ko", "en"))))
        rows["address"].append(f"{reg.city_ko} {rnd.choice(reg.streets)} {rnd.randint(1, 199)}")
        rows["price_level"].append(_price_level(rnd, attrs))
        rows["open_minute"].append(rnd.randrange(open_lo, open_hi + 1, 30))
        rows["close_minute"].append(rnd.randrange(close_lo, close_hi + 1, 30))
    created = window.start_us - rng.integers(60 * DAY_US, 1800 * DAY_US, n)
    places = Places(ids, region, category, lat, lon, quality,
                    zipf_weights(rng, n, 0.9) * np.exp(0.3 * quality), created, attributes)
    table = PLACES.to_arrow({
        "item_id": ids, "category_path": [topics.tags[c].path for c in category], "lat": lat, "lon": lon,
        "region": [REGIONS[r].key for r in region], "created_at": timestamps(created), **rows,
    })
    return places, table, _item_tags(ids, tag_rows)


def _normalised(w: np.ndarray) -> np.ndarray:
    return w / w.sum()


def _place_attributes(rnd, taxonomy: Taxonomy, category: Tag) -> list[Tag]:
    """1-3 dishes of the category, a price tag and a few mood/purpose/service/facility tags, favouring the typical."""
    menus = list(taxonomy.children(category.path, "menu"))
    chosen = rnd.sample(menus, rnd.randint(1, min(3, len(menus))))
    chosen += _pick(rnd, taxonomy.leaves("price"), 1, category.typical)
    for aspect, (lo, hi) in PLACE_ASPECT_COUNTS.items():
        chosen += _pick(rnd, taxonomy.leaves(aspect), rnd.randint(lo, hi), category.typical)
    return chosen


def _pick(rnd, candidates: tuple[Tag, ...], k: int, typical: tuple[str, ...]) -> list[Tag]:
    """``k`` distinct tags, typical ones ``TYPICAL_BOOST`` times as likely."""
    pool = list(candidates)
    picked = []
    for _ in range(k):
        tag = rnd.choices(pool, weights=[TYPICAL_BOOST if t.path in typical else 1.0 for t in pool])[0]
        pool.remove(tag)
        picked.append(tag)
    return picked


def _price_level(rnd, attributes: list[Tag]) -> int:
    price = next(t.name for t in attributes if t.aspect == "price")
    return {"cheap": 1, "moderate": 2}.get(price) or rnd.choice((3, 4))


def _item_tags(ids: pa.Array, rows: list[tuple[int, Tag]]) -> pa.Table:
    return TRUTH_ITEM_TAGS.to_arrow({
        "item_id": ids.take(pa.array([i for i, _ in rows], type=pa.int64())),
        "tag": [t.path for _, t in rows],
        "aspect": [t.aspect for _, t in rows],
    })


TASTE_ASPECTS = ("mood", "purpose", "facility")
SECOND_TASTE_SHARE = 0.5  # users who look for a second thing (a purpose or a facility besides a mood)


@dataclass(frozen=True)
class Tastes:
    """What each user looks for in a place beyond its food (a quiet room, a family table, parking). A
    place of the user's interests appeals more the more of these it has, so the aspects that reviews
    state, and extraction reads, change behaviour."""

    tags: tuple[Tag, ...]  # the taste vocabulary: the leaves of TASTE_ASPECTS
    of_user: np.ndarray  # (users, 2) codes into ``tags``, -1 = none
    place_has: np.ndarray  # (places, len(tags)) bool: the place's true attributes

    def match(self, user: np.ndarray, place: np.ndarray) -> np.ndarray:
        """Per (user, place) pair: the share of the user's tastes the place has."""
        codes = self.of_user[user]
        has = np.take_along_axis(self.place_has[place], np.maximum(codes, 0), axis=1) & (codes >= 0)
        return has.sum(axis=1) / np.maximum((codes >= 0).sum(axis=1), 1)


def make_tastes(taxonomy: Taxonomy, n_users: int, places: Places, rng: np.random.Generator) -> Tastes:
    """A mood for everyone; for half the users also a purpose or a facility."""
    tags = tuple(t for aspect in TASTE_ASPECTS for t in taxonomy.leaves(aspect))
    code = {t.path: i for i, t in enumerate(tags)}
    moods = [code[t.path] for t in taxonomy.leaves("mood")]
    others = [code[t.path] for aspect in TASTE_ASPECTS[1:] for t in taxonomy.leaves(aspect)]
    of_user = np.full((n_users, 2), -1, dtype=np.int64)
    of_user[:, 0] = rng.choice(moods, n_users)
    second = rng.random(n_users) < SECOND_TASTE_SHARE
    of_user[second, 1] = rng.choice(others, int(second.sum()))
    place_has = np.zeros((len(places), len(tags)), dtype=bool)
    for i, attributes in enumerate(places.attributes):
        place_has[i, [code[t.path] for t in attributes if t.path in code]] = True
    return Tastes(tags, of_user, place_has)


def tastes_table(users: Users, tastes: Tastes) -> pa.Table:
    row, slot = np.nonzero(tastes.of_user >= 0)
    chosen = [tastes.tags[c] for c in tastes.of_user[row, slot]]
    return TRUTH_USER_TASTES.to_arrow({"user_id": users.ids.take(pa.array(row)), "tag": [t.path for t in chosen],
                                       "aspect": [t.aspect for t in chosen]})


@dataclass(frozen=True)
class Clips:
    ids: pa.Array
    topic: np.ndarray
    duration_s: np.ndarray
    created_us: np.ndarray
    popularity: np.ndarray

    def __len__(self) -> int:
        return len(self.topic)


FRESH_CLIP_SHARE = 0.25  # created during the simulated days: no event may precede their upload


def make_clips(cfg: SyntheticSettings, taxonomy: Taxonomy, topics: Topics, window: Window,
               rng: np.random.Generator) -> tuple[Clips, pa.Table, pa.Table]:
    n = cfg.n_clips
    n_creators = max(len(topics), n // 25)
    creator_topics = gumbel_top_k(rng, np.log(topics.prior), n_creators, 2)
    specialist = rng.random(n_creators) < 0.6  # one topic; the others split 75/25 over two
    # Every topic gets a specialist creator with at least one clip, so no interest is without content.
    creator_topics[: len(topics), 0] = rng.permutation(len(topics))
    specialist[: len(topics)] = True
    creator_pop = rng.lognormal(0.0, 1.0, n_creators)
    creator_korean = rng.random(n_creators) < 0.7
    guaranteed = np.arange(min(n, n_creators))
    creator = np.concatenate([guaranteed, rng.choice(n_creators, size=n - len(guaranteed),
                                                     p=_normalised(np.sqrt(creator_pop)))])
    second = ~specialist[creator] & (rng.random(n) < 0.25)
    topic = creator_topics[creator, second.astype(int)]
    duration = np.clip(rng.lognormal(np.log(30.0), 0.6, n), 5, 180).astype(np.int32)
    fresh = np.zeros(n, dtype=bool)
    fresh[rng.permutation(n)[: int(FRESH_CLIP_SHARE * n)]] = True
    created = np.where(fresh, window.start_us + rng.integers(0, window.n_days * DAY_US, n),
                       window.start_us - rng.integers(SECOND_US, 180 * DAY_US, n))
    ids = format_ids("c", np.arange(n), id_width(n))
    rnd = text_random(rng)
    language = np.where(creator_korean[creator], "ko", "en")
    titles, descriptions = zip(*(text.write_clip_text(rnd, topics.tags[t], taxonomy.parent(topics.tags[t].path), lang)
                                 for t, lang in zip(topic, language)))
    clips = Clips(ids, topic, duration, created, zipf_weights(rng, n, 1.0) * np.sqrt(creator_pop[creator]))
    table = CLIPS.to_arrow({
        "item_id": ids, "creator_id": format_ids("cr", creator, id_width(n_creators)),
        "title": list(titles), "description": list(descriptions),
        "topic_path": [topics.tags[t].path for t in topic], "duration_s": duration,
        "language": language, "created_at": timestamps(created),
    })
    return clips, table, _item_tags(ids, [(i, topics.tags[t]) for i, t in enumerate(topic)])
