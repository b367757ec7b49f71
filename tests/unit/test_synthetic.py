"""The synthetic world and its taxonomy: contract conformance, determinism and honest ground truth."""

from __future__ import annotations

import io
import itertools
import re
from collections import defaultdict
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from hybridrec.synthetic import WorldSummary, generate_world, text
from hybridrec.config import SyntheticSettings
from hybridrec.contract import RAW_TABLES, TRUTH_TABLES
from hybridrec.taxonomy import ASPECTS, Taxonomy, Tag, load_taxonomy

SMALL = SyntheticSettings(seed=11, n_users=500, n_places=200, n_clips=500, n_events=20_000)
PLACE_ASPECTS = ("menu", "mood", "purpose", "price", "service", "facility")


@pytest.fixture(scope="module")
def world() -> dict[str, pd.DataFrame]:
    chunks = defaultdict(list)
    for spec, table in generate_world(SMALL):
        chunks[spec.name].append(table)
    return {name: pa.concat_tables(tables).to_pandas() for name, tables in chunks.items()}


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return load_taxonomy()


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _fingerprint(cfg: SyntheticSettings) -> list[tuple[str, bytes]]:
    return [(spec.name, _ipc_bytes(table)) for spec, table in generate_world(cfg)]


# ---------------------------------------------------------------- taxonomy


def test_taxonomy_has_the_promised_shape(taxonomy):
    topics = taxonomy.leaves("topic")
    assert 40 <= len(topics) <= 60
    assert {t.aspect for t in taxonomy.tags} == set(ASPECTS)
    for food in (t for t in topics if t.top == "food"):
        assert taxonomy.children(food.path, "menu"), f"{food.path} has no dishes"
    for tag in taxonomy.tags:
        assert all(ref in taxonomy for ref in tag.typical)


def test_taxonomy_navigation(taxonomy):
    assert taxonomy.parent("sports/soccer").path == "sports"
    assert {t.path for t in taxonomy.siblings("sports/soccer")} >= {"sports/baseball", "sports/basketball"}
    assert taxonomy.siblings("sports") == ()
    assert taxonomy.is_ancestor("food/korean", "food/korean/gukbap/sundae-gukbap")
    assert not taxonomy.is_ancestor("food/korean/gukbap", "food/korean/gukbap")
    assert not taxonomy.is_ancestor("food/kor", "food/korean")
    assert taxonomy.is_leaf("food/korean/gukbap")  # a topic leaf, although its dishes hang below it
    assert [t.path for t in taxonomy.ancestors("food/korean/gukbap")] == ["food/korean", "food"]
    assert taxonomy.lookup("순대국밥", "ko").path == "food/korean/gukbap/sundae-gukbap"
    assert taxonomy.lookup("Omakase", "en").path == "food/japanese/sushi/omakase"
    assert load_taxonomy() is taxonomy


def test_taxonomy_refuses_ambiguous_surface_forms():
    with pytest.raises(ValueError, match="used by"):
        Taxonomy([Tag("a", "topic", ("축구",), ("soccer",)), Tag("b", "topic", ("야구",), ("Soccer",))])
    with pytest.raises(ValueError, match="no parent"):
        Taxonomy([Tag("a/b", "topic", ("축구",), ("soccer",))])


def test_review_templates_contain_no_place_tag_words(taxonomy):
    """Otherwise an extractor would 'find' tags the review was not written from."""
    forms = {f.casefold() for t in taxonomy.tags if t.aspect in PLACE_ASPECTS or t.top == "food" for f in t.ko + t.en}
    sentences = [s for by_lang in text.REVIEW_TEMPLATES.values() for by_mood in by_lang.values()
                 for group in by_mood.values() for s in group]
    sentences += [s for by_mood in text.FILLER.values() for group in by_mood.values() for s in group]
    for sentence in sentences:
        literal = re.sub(r"\{[^}]*\}", " ", sentence).casefold()
        assert not [f for f in forms if f in literal], sentence


def test_korean_particles_follow_the_last_syllable():
    assert text.fill("{kw:이/가} 맛있어요", "국밥") == "국밥이 맛있어요"
    assert text.fill("{kw:이/가} 맛있어요", "라떼") == "라떼가 맛있어요"
    assert text.fill("{kw:으로/로} 왔어요", "회식") == "회식으로 왔어요"
    assert text.fill("{kw:으로/로} 왔어요", "단체 모임") == "단체 모임으로 왔어요"
    assert text.fill("{kw:으로/로} 왔어요", "데이트") == "데이트로 왔어요"


# ---------------------------------------------------------------- contract and determinism


def test_same_seed_gives_byte_identical_tables_and_another_seed_does_not():
    cfg = SMALL.model_copy(update={"n_events": 5_000})
    first = _fingerprint(cfg)
    assert first == _fingerprint(cfg)
    assert first != _fingerprint(cfg.model_copy(update={"seed": 12}))


def test_chunks_conform_to_the_contract_and_each_table_is_contiguous():
    summary = WorldSummary()
    order = []
    for spec, table in summary.track(generate_world(SMALL.model_copy(update={"n_events": 3_000}))):
        assert table.schema == spec.arrow_schema, spec.name
        order.append(spec)
    grouped = [spec for spec, _ in itertools.groupby(order)]
    assert len(grouped) == len(set(grouped)) == len(RAW_TABLES + TRUTH_TABLES)
    assert summary.rows["raw.users"] == 500 and summary.seconds > 0


def test_keys_are_unique(world):
    for spec in RAW_TABLES + TRUTH_TABLES:
        frame = world[spec.name]
        assert not frame.duplicated(list(spec.key)).any(), spec.name


def test_event_total_is_close_to_the_target(world):
    assert abs(len(world["events"]) - SMALL.n_events) / SMALL.n_events < 0.03


# ---------------------------------------------------------------- referential integrity


def test_events_reference_existing_rows(world):
    ev, places, clips = world["events"], set(world["places"].item_id), set(world["clips"].item_id)
    assert set(ev.user_id) <= set(world["users"].user_id)
    on_place, on_clip = ev[ev.surface == "place"], ev[ev.surface == "clip"]
    assert set(on_place.item_id.dropna()) <= places and set(on_clip.item_id.dropna()) <= clips
    assert ev[ev.event_type == "search"].item_id.isna().all()
    assert ev[ev.event_type != "search"].item_id.notna().all()
    assert set(ev.query_id.dropna()) <= set(world["search_queries"].query_id)
    assert ev[ev.event_type == "search"].query_id.notna().all()
    assert ev.event_id.is_unique


def test_content_references_existing_rows(world, taxonomy):
    users = set(world["users"].user_id)
    items = set(world["places"].item_id) | set(world["clips"].item_id)
    assert set(world["reviews"].item_id) <= set(world["places"].item_id)
    assert set(world["reviews"].user_id) <= users and set(world["search_queries"].user_id) <= users
    assert set(world["item_tags"].item_id) <= items
    assert {i for ids in world["search_queries"].clicked_item_ids for i in ids} <= items
    for column in (world["item_tags"].tag, world["user_interests"].tag, world["review_tags"].tag):
        assert all(tag in taxonomy for tag in set(column))
    topic_leaves = {t.path for t in taxonomy.leaves("topic")}
    assert set(world["clips"].topic_path) | set(world["places"].category_path) <= topic_leaves


def test_events_happen_in_the_window_after_uploads_and_in_session_order(world):
    ev = world["events"]
    start = datetime.fromisoformat(SMALL.start_date).replace(tzinfo=timezone.utc)
    assert ev.ts.min() >= start and ev.ts.max() < start + pd.Timedelta(days=SMALL.n_days)
    uploaded = ev.merge(world["clips"][["item_id", "created_at"]], on="item_id")
    assert (uploaded.ts > uploaded.created_at).all()
    feed = ev[ev.request_id.str.startswith("s")]
    first = feed.sort_values("ts", kind="stable").groupby(["request_id", "item_id"]).event_type.first()
    assert (first == "view").all()
    assert feed.groupby("request_id").position.max().max() < 20


# ---------------------------------------------------------------- ground truth


def test_every_review_states_its_truth_tags_and_only_true_place_tags(world, taxonomy):
    reviews = world["reviews"].set_index("review_id")
    truth = world["review_tags"].join(reviews[["text", "item_id"]], on="review_id")
    assert all(kw in body for kw, body in zip(truth.keyword, truth.text))
    assert set(truth.review_id) == set(reviews.index)
    assert all(taxonomy.get(tag).aspect == aspect for tag, aspect in zip(truth.tag, truth.aspect))
    place_tags = set(zip(world["item_tags"].item_id, world["item_tags"].tag))
    assert all(pair in place_tags for pair in zip(truth.item_id, truth.tag))


def test_query_labels_match_intents_and_user_interests(world, taxonomy):
    queries = world["search_queries"].merge(world["query_labels"], on="query_id")
    assert (queries[queries.intent != "interest"].tags.map(len) == 0).all()
    assert (queries[queries.intent != "interest"].clicked_item_ids.map(len) == 0).all()
    interest = queries[queries.intent == "interest"]
    held = set(zip(world["user_interests"].user_id, world["user_interests"].tag))
    assert all((user, tag) in held for user, tags in zip(interest.user_id, interest.tags) for tag in tags)
    # The trap: utility queries name destinations, often by users with no travel interest at all.
    travellers = set(world["user_interests"][world["user_interests"].tag.str.startswith("travel/")].user_id)
    destinations = {f for t in taxonomy.leaves("topic") if t.top == "travel" for f in t.ko + t.en}
    utility = queries[queries.intent == "utility"]
    naming = utility[utility.text.map(lambda q: any(d in q for d in destinations))]
    assert len(naming) > 20 and (~naming.user_id.isin(travellers)).sum() > 10


def test_cold_users_only_search(world):
    start = datetime.fromisoformat(SMALL.start_date).replace(tzinfo=timezone.utc)
    cold = set(world["users"][world["users"].signup_at >= start].user_id)
    assert len(cold) == round(SMALL.cold_user_share * SMALL.n_users)
    assert not cold & set(world["events"].user_id) and not cold & set(world["reviews"].user_id)
    queries = world["search_queries"].merge(world["query_labels"], on="query_id")
    per_user = queries[queries.user_id.isin(cold)].groupby("user_id").intent.apply(lambda i: (i == "interest").sum())
    assert set(per_user.index) == cold and (per_user >= 2).all()


def _clip_events_with_topics(world) -> pd.DataFrame:
    ev = world["events"]
    return ev[ev.surface == "clip"].merge(world["clips"][["item_id", "topic_path"]], on="item_id")


def test_focused_users_engage_with_their_topic_not_its_siblings(world, taxonomy):
    """A soccer-only user likes soccer clips, not baseball ones, although baseball is the closest topic."""
    interests = world["user_interests"]
    counts = interests.groupby("user_id").tag.transform("size")
    focused = interests[counts == 1][["user_id", "tag"]]
    ev = _clip_events_with_topics(world).merge(focused, on="user_id")
    siblings = {t.path: {s.path for s in taxonomy.siblings(t.path)} for t in taxonomy.leaves("topic")}
    ev["own"] = ev.topic_path == ev.tag
    ev["sibling"] = [topic in siblings[tag] for topic, tag in zip(ev.topic_path, ev.tag)]
    engaged = ev[ev.event_type.isin(["like", "save", "share"])]
    views = ev[ev.event_type == "view"]
    assert len(engaged) > 50
    assert engaged.own.mean() > 0.85 and engaged.sibling.mean() < 0.05
    assert views.own.sum() > 5 * views.sibling.sum()


def test_drifted_interest_shows_up_only_after_its_first_day(world):
    interests = world["user_interests"]
    drift = interests[interests.from_day > 0][["user_id", "tag", "from_day"]]
    assert 0 < drift.user_id.nunique() < len(world["users"]) / 2
    start = datetime.fromisoformat(SMALL.start_date).replace(tzinfo=timezone.utc)
    ev = _clip_events_with_topics(world)
    ev = ev[ev.event_type == "dwell"].merge(drift, on="user_id")
    ev["after"] = (ev.ts - start).dt.days >= ev.from_day
    share = ev.assign(on_new=ev.topic_path == ev.tag).groupby("after").on_new.mean()
    assert share[True] > 3 * share[False]


def test_user_ids_are_opaque_unique_and_fixed_by_the_seed(world):
    """Sequential ids (u00042) would let anyone enumerate users and read their order of sign-up."""
    from hybridrec.synthetic.entities import user_ids

    ids = world["users"].user_id.tolist()
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"u[0-9a-f]{16}", u) for u in ids)
    assert ids == user_ids(SMALL).to_pylist() and ids != sorted(ids)
    assert set(ids).isdisjoint(user_ids(SMALL.model_copy(update={"seed": 12})).to_pylist())
    assert set(world["events"].user_id) <= set(ids)


def test_users_carry_the_arm_the_feed_api_assigns_them(world):
    """The world's recorded events belong to the configured experiment's arms, split as configured, so
    the experiment report (and its sample-ratio check) reads the same split the API serves."""
    from hybridrec.config import ServingSettings
    from hybridrec.experiments import assign

    serving = ServingSettings()
    users = world["users"]
    arms = {u: assign(serving.experiment_name, serving.experiments, u).name for u in users.user_id}
    events = world["events"]
    assert (events.experiment_variant == events.user_id.map(arms)).all()
    share = pd.Series(list(arms.values())).value_counts(normalize=True)
    assert set(share.index) == {v.name for v in serving.experiments}
    assert abs(share["fusion-holdout"] - 0.1) < 0.04  # 500 users: within 3 standard errors


def test_places_with_what_the_user_looks_for_are_opened_more():
    """Tastes (a mood, a purpose, a facility) change behaviour: among places of a user's interests, those
    having one of the user's tastes are opened clearly more often than those having none."""
    chunks = defaultdict(list)
    for spec, table in generate_world(SMALL.model_copy(update={"n_events": 150_000})):
        chunks[spec.name].append(table)
    world = {name: pa.concat_tables(tables).to_pandas() for name, tables in chunks.items()}
    tastes = world["user_tastes"].groupby("user_id").tag.agg(set)
    place_tags = world["item_tags"].groupby("item_id").tag.agg(set)
    interests = world["user_interests"].groupby("user_id").tag.agg(set)
    category = world["places"].set_index("item_id").category_path
    events = world["events"][world["events"].surface == "place"]
    clicked = set(map(tuple, events[events.event_type == "click"][["user_id", "item_id", "request_id"]].values))
    views = events[events.event_type == "view"]
    on_topic = views[[category[i] in interests.get(u, ()) for u, i in zip(views.user_id, views.item_id)]]
    has_taste = np.array([bool(tastes.get(u, set()) & place_tags[i]) for u, i in zip(on_topic.user_id, on_topic.item_id)])
    opened = np.array([k in clicked for k in map(tuple, on_topic[["user_id", "item_id", "request_id"]].values)])
    assert len(on_topic) > 1000 and 0.2 < has_taste.mean() < 0.8
    assert opened[has_taste].mean() > 1.25 * opened[~has_taste].mean()
