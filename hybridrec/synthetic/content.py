"""Reviews of places and search queries of users, each with the ground truth it was written from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from hybridrec.synthetic import text
from hybridrec.synthetic.catalog import Catalog
from hybridrec.synthetic.common import (
    DAY_US, REGIONS, SECOND_US, SegmentSampler, Window, format_ids, id_width, sample_rows, sample_with_fallback,
    text_random, timestamps,
)
from hybridrec.synthetic.entities import Places, Topics, Users
from hybridrec.config import SyntheticSettings
from hybridrec.contract import REVIEWS, SEARCH_QUERIES, TRUTH_QUERY_LABELS, TRUTH_REVIEW_TAGS, QueryIntent
from hybridrec.taxonomy import Taxonomy

REVIEWER_IN_PLACE_REGION = 0.85


def make_reviews(cfg: SyntheticSettings, users: Users, places: Places, window: Window,
                 rng: np.random.Generator) -> tuple[pa.Table, pa.Table]:
    """About ``reviews_per_place`` reviews per place (more for popular ones) by warm users, mostly locals."""
    relative = np.sqrt(places.popularity) / np.sqrt(places.popularity).mean()
    place = np.repeat(np.arange(len(places)), rng.poisson(cfg.reviews_per_place * relative))
    n = len(place)
    warm = np.flatnonzero(~users.cold)
    local = rng.random(n) < REVIEWER_IN_PLACE_REGION
    region = np.where(local, places.region[place], rng.integers(0, len(REGIONS), n))
    reviewer = warm[sample_with_fallback(rng, [
        (SegmentSampler(users.region[warm], users.activity[warm], len(REGIONS)), region),
        (SegmentSampler(np.zeros(len(warm), dtype=np.int64), users.activity[warm], 1), np.zeros(n, dtype=np.int64)),
    ])]
    rating = np.clip(np.rint(3.6 + 0.8 * places.quality[place] + rng.normal(0.0, 0.9, n)), 1, 5).astype(np.int32)
    earliest = np.maximum(users.signup_us[reviewer], places.created_us[place])
    created = earliest + (rng.random(n) * (window.end_us - earliest)).astype(np.int64)
    ids = format_ids("r", np.arange(n), id_width(n))
    rnd = text_random(rng)
    bodies, languages, truth = [], [], []
    for i, (p, u, stars) in enumerate(zip(place.tolist(), reviewer.tolist(), rating.tolist())):
        language = users.language(u)
        body, mentions = text.write_review(rnd, places.attributes[p], language, stars)
        bodies.append(body)
        languages.append(language)
        truth += [(i, tag, keyword) for tag, keyword in mentions]
    reviews = REVIEWS.to_arrow({
        "review_id": ids, "item_id": places.ids.take(pa.array(place)), "user_id": users.ids.take(pa.array(reviewer)),
        "text": bodies, "rating": rating, "language": languages, "created_at": timestamps(created),
    })
    review_tags = TRUTH_REVIEW_TAGS.to_arrow({
        "review_id": ids.take(pa.array([i for i, _, _ in truth], type=pa.int64())),
        "tag": [t.path for _, t, _ in truth], "aspect": [t.aspect for _, t, _ in truth],
        "keyword": [k for _, _, k in truth],
    })
    return reviews, review_tags


@dataclass(frozen=True)
class QueryLog:
    """What the event simulator needs of the queries: who searched when, where, and what they opened."""

    ids: pa.Array
    user: np.ndarray
    ts_us: np.ndarray
    on_place: np.ndarray
    click_query: np.ndarray  # one row per opened result, grouped by query
    click_item: np.ndarray  # a place or clip index, per the query's surface
    click_rank: np.ndarray


INTENTS = (QueryIntent.INTEREST, QueryIntent.UTILITY, QueryIntent.NAVIGATIONAL)
INTENT_SHARES = (0.55, 0.30, 0.15)
COLD_USER_MIN_QUERIES = 3  # and their first two are about interests: the cold-start benchmark needs signal
TWO_INTEREST_SHARE = 0.4  # of interest queries by users holding two interests that combine naturally
# Topic families one query can naturally combine: "파타고니아 트레킹", "osaka ramen", "라멘 레시피".
COMBINABLE_FAMILIES = ({"travel", "nature"}, {"travel", "food"}, {"travel", "sports"}, {"food", "cooking"},
                       {"pets", "nature"})
FOOD_QUERY_ON_MAP = 0.7
OTHER_QUERY_ON_MAP = 0.3
CLICKS_PER_INTEREST_QUERY = ((0, 1, 2, 3), (0.25, 0.35, 0.25, 0.15))


def make_queries(cfg: SyntheticSettings, taxonomy: Taxonomy, topics: Topics, users: Users, catalog: Catalog,
                 window: Window, rng: np.random.Generator) -> tuple[QueryLog, pa.Table, pa.Table]:
    """About ``queries_per_user`` queries per user: interest, utility (destinations named, yet no interest)
    and navigational; interest queries open 0-3 results of their topic."""
    per_user = 1 + rng.poisson(max(cfg.queries_per_user - 1.0, 0.0), len(users))
    per_user = np.where(users.cold, np.maximum(per_user, COLD_USER_MIN_QUERIES), per_user)
    user = np.repeat(np.arange(len(users)), per_user)
    n = len(user)
    nth = np.arange(n) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    intent = np.where(users.cold[user] & (nth < 2), 0, rng.choice(3, size=n, p=INTENT_SHARES))
    ts = _query_times(users, user, window, rng)
    first, second = _query_topics(users, _combinable(topics), user, (ts - window.start_us) // DAY_US, intent == 0, rng)
    map_share = np.where(topics.is_food[np.maximum(first, 0)] & (second < 0), FOOD_QUERY_ON_MAP, OTHER_QUERY_ON_MAP)
    on_place = rng.random(n) < map_share
    region = np.where(rng.random(n) < 0.8, users.region[user], rng.integers(0, len(REGIONS), n))
    click_query, click_item, click_rank = _clicks(catalog, first, second, on_place, region, ts, rng)

    ids = format_ids("q", np.arange(n), id_width(n))
    texts, labels = _write_queries(text_random(rng), taxonomy, topics, users, user, intent, first, second,
                                   np.where(on_place, region, -1))
    clicked = _clicked_lists(catalog, n, on_place, click_query, click_item)
    queries = SEARCH_QUERIES.to_arrow({
        "query_id": ids, "user_id": users.ids.take(pa.array(user)), "text": texts,
        "surface": np.where(on_place, "place", "clip"), "clicked_item_ids": clicked, "ts": timestamps(ts),
    })
    query_labels = TRUTH_QUERY_LABELS.to_arrow({
        "query_id": ids, "intent": [INTENTS[k].value for k in intent], "tags": labels,
    })
    log = QueryLog(ids, user, ts, on_place, click_query, click_item, click_rank)
    return log, queries, query_labels


def _write_queries(rnd, taxonomy: Taxonomy, topics: Topics, users: Users, user: np.ndarray, intent: np.ndarray,
                   first: np.ndarray, second: np.ndarray, map_region: np.ndarray) -> tuple[list[str], list[list[str]]]:
    """Query texts and their interest labels (empty for utility and navigational queries)."""
    destinations = tuple(t for t in topics.tags if t.top == "travel")
    menus = [taxonomy.children(t.path, "menu") for t in topics.tags]
    texts, labels = [], []
    for i in range(len(user)):
        language = users.language(user[i])
        if intent[i] == 0:
            tags = [topics.tags[t] for t in (first[i], second[i]) if t >= 0]
            near = REGIONS[map_region[i]] if map_region[i] >= 0 and tags[0].top == "food" and len(tags) == 1 else None
            texts.append(text.write_interest_query(rnd, tags, language, near, menus[first[i]]))
            labels.append([t.path for t in tags])
        else:
            texts.append(text.write_utility_query(rnd, language, destinations) if intent[i] == 1
                         else text.write_navigational_query(rnd, language))
            labels.append([])
    return texts, labels


def _clicked_lists(catalog: Catalog, n_queries: int, on_place: np.ndarray, click_query: np.ndarray,
                   click_item: np.ndarray) -> pa.ListArray:
    item_ids = pa.concat_arrays([catalog.places.ids, catalog.clips.ids])
    offsets = np.concatenate([[0], np.cumsum(np.bincount(click_query, minlength=n_queries))])
    items = item_ids.take(pa.array(click_item + np.where(on_place[click_query], 0, len(catalog.places))))
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), items)


def _query_times(users: Users, user: np.ndarray, window: Window, rng: np.random.Generator) -> np.ndarray:
    """Any time in the window (cold users: after signing up), early enough that the result clicks fit the day."""
    earliest = np.where(users.cold[user], np.maximum(users.signup_us[user], window.start_us), window.start_us)
    ts = earliest + (rng.random(len(user)) * (window.end_us - earliest)).astype(np.int64)
    day_end = window.start_us + ((ts - window.start_us) // DAY_US + 1) * DAY_US
    return np.minimum(ts, day_end - 120 * SECOND_US)


def _combinable(topics: Topics) -> np.ndarray:
    """[topic, topic] True where the two families make one natural query."""
    top = [t.top for t in topics.tags]
    return np.array([[{a, b} in COMBINABLE_FAMILIES for b in top] for a in top])


def _query_topics(users: Users, combinable: np.ndarray, user: np.ndarray, day: np.ndarray, about_interest: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One interest in force that day, sometimes with a second that combines with it; -1 for the other intents."""
    weights = users.active_weights(user, day)
    first_slot = sample_rows(rng, weights)  # every user holds an interest from day 0, so never -1
    held = users.topics[user]
    first = np.where(about_interest, held[np.arange(len(user)), first_slot], -1)
    weights *= combinable[np.maximum(first, 0)[:, None], np.maximum(held, 0)]
    second_slot = sample_rows(rng, weights)
    wants_two = about_interest & (second_slot >= 0) & (rng.random(len(user)) < TWO_INTEREST_SHARE)
    return first, np.where(wants_two, users.topics[user, second_slot], -1)


def _clicks(catalog: Catalog, first: np.ndarray, second: np.ndarray, on_place: np.ndarray, region: np.ndarray,
            ts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """0-3 results of the queried topic per interest query, distinct, at increasing ranks of the result list."""
    counts, shares = CLICKS_PER_INTEREST_QUERY
    n_clicks = np.where(first >= 0, rng.choice(counts, size=len(first), p=shares), 0)
    query = np.repeat(np.arange(len(first)), n_clicks)
    use_second = (second[query] >= 0) & (rng.random(len(query)) < 0.5)
    topic = np.where(use_second, second[query], first[query])
    place = on_place[query]
    item = np.empty(len(query), dtype=np.int64)
    item[place] = catalog.places_on_topic(rng, topic[place], region[query][place])
    item[~place] = catalog.clips_on_topic(rng, topic[~place], ts[query][~place])
    keep = item >= 0
    query, item = query[keep], item[keep]
    _, first_seen = np.unique(query * (max(len(catalog.places), len(catalog.clips)) + 1) + item, return_index=True)
    first_seen.sort()
    query, item = query[first_seen], item[first_seen]
    gaps = rng.geometric(0.5, len(query))
    cum = np.cumsum(gaps)
    starts = np.searchsorted(query, query, side="left")
    rank = cum - (cum[starts] - gaps[starts]) - 1
    return query, item, rank.astype(np.int32)
