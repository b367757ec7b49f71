"""Cold start from search history alone, on the synthetic world in the lake.

Protocol (simulated cold start: the standard way to score cold users against logged behaviour):
every user who searched before the label days (the retrain's last ``retrain.label_days`` days) and
engaged with something on a surface during them is treated as if their searches were all we knew.
Their engaged items on the label days are the relevant set; Recall@20 and NDCG@20 (LightGCN
definitions, :func:`hybridrec.models.ranking_metrics.list_metrics`) compare three feeds:

(a) ``popularity``: most engaged items before the label days (places: in the user's home region);
(b) ``raw-search``: every taxonomy term the user typed taken as an interest, whatever the query was for
    ("볼리비아 비자" counts as South-America travel), ranked by the feed below;
(c) ``student``: the distilled student's tags of the user's interest queries only;
(t) ``truth``: the world's true interests of the user, weighted (``truth.user_interests``): not a
    competitor but the ceiling of any interest tagger under this feed, so a lift that (c) misses can
    be told apart from one no tagger could reach.

A feed from interests takes, per interest tag, its most popular items (score = tag weight / (1 + rank
within the tag), so tags share the slots by weight) and fills up with popular items.

Topic confusion: users whose true interests (``truth.user_interests``) are soccer only and who searched
for an interest at least once get their first clip feed from (c) through serving's rules (topic
consistency with the classifier's topics, caps, MMR); the share with any baseball clip is reported,
with and without the rules (and for all soccer-only users, searchers or not).

    hybridrec bench cold-start
"""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from hybridrec.registry import distilled_files, load_student, load_topic_classifier
from hybridrec.benchmarks import write_result
from hybridrec.config import Settings
from hybridrec.contract import CLIPS, EVENTS, PLACES, SEARCH_QUERIES, TRUTH_QUERY_LABELS, TRUTH_USER_INTERESTS, USERS, QueryIntent
from hybridrec.lake import Lake
from hybridrec.models.ranking_metrics import list_metrics
from hybridrec.serving import rules
from hybridrec.models.extraction.rules import RuleQueryReader
from hybridrec.taxonomy import Taxonomy, load_taxonomy

log = logging.getLogger("hybridrec.bench.cold_start")

K = 20
FILLER_DEPTH = 200  # popular items a feed can fill up from
TARGET_LIFT_OVER_POPULARITY = 3.0
TARGET_CONFUSION = 0.01
FEEDS = ("popularity", "raw-search", "student", "truth")


def run_benchmark(settings: Settings) -> dict[str, Any]:
    load_at_start = os.getloadavg()
    lake, taxonomy = Lake(settings), load_taxonomy()
    run_id, _ = distilled_files(settings)
    student, classifier = load_student(settings), load_topic_classifier(settings)
    events = lake.scan(EVENTS, columns=("user_id", "item_id", "surface", "event_type", "ts")).to_pandas()
    events = events[events["event_type"].isin(list(settings.retrain.label_gains)) & events["item_id"].notna()]
    last_day = events["ts"].max().normalize()
    label_start = last_day + pd.Timedelta(days=1) - pd.Timedelta(days=settings.retrain.label_days)
    queries = lake.scan(SEARCH_QUERIES, columns=("query_id", "user_id", "text", "ts")).to_pandas()
    users = lake.scan(USERS, columns=("user_id", "home_region")).to_pandas().set_index("user_id")["home_region"]
    catalog = _catalog(lake, classifier)

    history = queries[queries["ts"] < label_start]
    tag_student = _memo(lambda text: _student_tags(student, text))
    tag_raw = _memo(RuleQueryReader(taxonomy).ground)
    interests = {name: _interests(history, tagger, taxonomy) for name, tagger in (("raw-search", tag_raw),
                                                                                  ("student", tag_student))}
    interests["truth"] = _true_interests(lake, taxonomy)

    before, during = events[events["ts"] < label_start], events[events["ts"] >= label_start]
    results: dict[str, Any] = {}
    for surface in ("clip", "place"):
        items = catalog[surface]
        relevant = during[(during["surface"] == surface) & during["user_id"].isin(interests["student"].keys() |
                                                                                    interests["raw-search"].keys())]
        relevant = relevant[relevant["user_id"].isin(history["user_id"])][["user_id", "item_id"]].drop_duplicates()
        popularity = before[before["surface"] == surface].groupby("item_id").size()
        feeds = FeedBuilder(items, popularity, users if surface == "place" else None)
        evaluated = relevant["user_id"].unique()
        for name in FEEDS:
            lists = [(u, feeds.feed(u, interests.get(name, {}).get(u, {}))) for u in evaluated]
            recommended = pd.DataFrame([(u, i, r) for u, feed in lists for r, i in enumerate(feed, start=1)],
                                       columns=["user_id", "item_id", "rank"])
            metrics = list_metrics(recommended, relevant, K, popularity, len(items))
            results[f"{surface}/{name}"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
            log.info("%s %-10s recall@%d %.4f ndcg@%d %.4f (%d users)", surface, name, K, metrics[f"recall@{K}"], K,
                     metrics[f"ndcg@{K}"], metrics["users"])
    confusion = _topic_confusion(lake, settings, taxonomy, catalog["clip"], queries, tag_student, events)
    headline = _headline(results, confusion, run_id, label_start)
    path = write_result("cold-start-synthetic", "cold-start", "synthetic world in the lake (simulated cold start)",
                        "hybridrec bench cold-start", headline, settings=settings, load_at_start=load_at_start)
    log.info("wrote %s", path)
    return headline


def _memo(fn: Callable[[str], tuple[str, ...]]) -> Callable[[str], tuple[str, ...]]:
    cache: dict[str, tuple[str, ...]] = {}
    return lambda text: cache[text] if text in cache else cache.setdefault(text, fn(text))


def _student_tags(student, text: str) -> tuple[str, ...]:
    found = student.predict(text)
    return found.tags if found.intent == QueryIntent.INTEREST else ()


def _interests(history: pd.DataFrame, tag: Callable[[str], tuple[str, ...]], taxonomy: Taxonomy
               ) -> dict[str, dict[str, float]]:
    """Per user: interest tag (topic level) → share of the user's tagged searches naming it."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for user, text in zip(history["user_id"], history["text"]):
        for t in tag(text):
            counts[user][taxonomy.topic_of(t)] += 1
    return {u: {t: n / sum(c.values()) for t, n in c.items()} for u, c in counts.items()}


def _true_interests(lake: Lake, taxonomy: Taxonomy) -> dict[str, dict[str, float]]:
    """Per user: true interest (topic level) → its weight among the user's interests."""
    truth = lake.scan(TRUTH_USER_INTERESTS, columns=("user_id", "tag", "weight")).to_pandas()
    truth["topic"] = truth["tag"].map(taxonomy.topic_of)
    weights = truth.groupby(["user_id", "topic"])["weight"].sum()
    totals = weights.groupby(level="user_id").transform("sum")
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for (user, topic), share in (weights / totals).items():
        out[user][topic] = float(share)
    return dict(out)


def _catalog(lake: Lake, classifier) -> dict[str, pd.DataFrame]:
    clips = lake.scan(CLIPS, columns=("item_id", "topic_path", "creator_id", "title", "description")).to_pandas()
    clips["predicted_topic_path"] = classifier.predict_clips(clips["title"], clips["description"])
    places = lake.scan(PLACES, columns=("item_id", "category_path", "region")).to_pandas()
    return {"clip": clips.set_index("item_id"), "place": places.rename(columns={"category_path": "topic_path"}).set_index("item_id")}


class FeedBuilder:
    """Interest items (most popular first within each tag, tags sharing slots by weight), then popular filler."""

    def __init__(self, items: pd.DataFrame, popularity: pd.Series, user_region: pd.Series | None):
        self.user_region = user_region
        ranked = items.assign(popularity=popularity.reindex(items.index).fillna(0)).sort_values("popularity",
                                                                                                ascending=False)
        groups = [ranked["region"]] if user_region is not None else [np.zeros(len(ranked))]
        self.by_tag: dict[tuple[Any, str], list[str]] = defaultdict(list)
        self.popular: dict[Any, list[str]] = defaultdict(list)
        for item_id, topic, group in zip(ranked.index, ranked["topic_path"], groups[0]):
            if len(self.popular[group]) < FILLER_DEPTH:
                self.popular[group].append(item_id)
            parts = topic.split("/")
            for depth in range(1, len(parts) + 1):
                bucket = self.by_tag[(group, "/".join(parts[:depth]))]
                if len(bucket) < FILLER_DEPTH:
                    bucket.append(item_id)

    def candidates(self, user: str, interests: Mapping[str, float]) -> list[str]:
        group = self.user_region.get(user) if self.user_region is not None else 0.0
        scores: dict[str, float] = {}
        for tag, weight in interests.items():
            for rank, item in enumerate(self.by_tag.get((group, tag), ())):
                scores[item] = max(scores.get(item, 0.0), weight / (1 + rank))
        chosen = sorted(scores, key=lambda i: -scores[i])
        return chosen + [i for i in self.popular[group] if i not in scores]

    def feed(self, user: str, interests: Mapping[str, float]) -> list[str]:
        return self.candidates(user, interests)[:K]


def _topic_confusion(lake: Lake, settings: Settings, taxonomy: Taxonomy, clips: pd.DataFrame, queries: pd.DataFrame,
                     tag: Callable[[str], tuple[str, ...]], events: pd.DataFrame) -> dict[str, Any]:
    """First clip feed of soccer-only users (true interests), built from their student-tagged searches.

    Headline population: those who searched for an interest at least once (by the world's truth), the
    ones a search history can reveal; users who only looked up the weather are new users to any system
    and are reported apart."""
    truth = lake.scan(TRUTH_USER_INTERESTS, columns=("user_id", "tag")).to_pandas()
    held = truth.groupby("user_id")["tag"].agg(frozenset)
    labels = lake.scan(TRUTH_QUERY_LABELS, columns=("query_id", "intent")).to_pandas()
    interest_ids = set(labels.loc[labels["intent"] == QueryIntent.INTEREST.value, "query_id"])
    searched_interest = set(queries.loc[queries["query_id"].isin(interest_ids), "user_id"])
    soccer_only = held[held == frozenset({"sports/soccer"})].index
    soccer_no_baseball = held[held.map(lambda s: "sports/soccer" in s and "sports/baseball" not in s)].index
    interests = _interests(queries[queries["user_id"].isin(soccer_no_baseball)], tag, taxonomy)
    popularity = events[events["surface"] == "clip"].groupby("item_id").size()
    feeds = FeedBuilder(clips, popularity, None)
    rule_set = rules.RuleSet.from_settings(settings.serving, "clip")
    docs = {i: {"topic_path": r.topic_path, "predicted_topic_path": r.predicted_topic_path, "creator_id": r.creator_id}
            for i, r in clips.iterrows()}
    now = datetime.now(timezone.utc)

    def is_baseball(item: str) -> bool:
        return any(p == "sports/baseball" or Taxonomy.is_ancestor("sports/baseball", p)
                   for p in (clips.at[item, "topic_path"], clips.at[item, "predicted_topic_path"]) if p)

    def shares(users) -> dict[str, float]:
        with_rules = without = 0
        for user in users:
            user_interests = interests.get(user, {})
            pool = feeds.candidates(user, user_interests)[:FILLER_DEPTH]
            without += any(is_baseball(i) for i in pool[:K])
            blocked = rules.blocked_topics(taxonomy, user_interests, rule_set.min_topic_share)
            kept, _ = rules.hard_filters({i: docs[i] for i in pool}, "clip", rule_set, blocked, now)
            ranked = [(i, 1.0 / (1 + n)) for n, i in enumerate(kept)]
            with_rules += any(is_baseball(i) for i in rules.select(ranked, docs, K, rule_set))
        n = max(len(users), 1)
        return {"users": len(users), "baseball_share": round(with_rules / n, 4),
                "baseball_share_without_rules": round(without / n, 4)}

    return {"soccer_only_searchers": shares([u for u in soccer_only if u in searched_interest]),
            "soccer_only_all": shares(soccer_only),
            "soccer_not_baseball_searchers": shares([u for u in soccer_no_baseball if u in searched_interest])}


def _headline(results: dict[str, Any], confusion: dict[str, Any], run_id: str, label_start) -> dict[str, Any]:
    out: dict[str, Any] = {"student_run": run_id, "label_start": str(label_start.date()), "k": K}
    for surface in ("clip", "place"):
        pop, raw, student, truth = (results[f"{surface}/{n}"] for n in FEEDS)
        for name in FEEDS:
            m = results[f"{surface}/{name}"]
            out[f"{surface}/{name}/recall@{K}"], out[f"{surface}/{name}/ndcg@{K}"] = m[f"recall@{K}"], m[f"ndcg@{K}"]
        out[f"{surface}/users"] = student["users"]
        out[f"{surface}/student_over_popularity_ndcg"] = round(student[f"ndcg@{K}"] / max(pop[f"ndcg@{K}"], 1e-9), 2)
        out[f"{surface}/truth_over_popularity_ndcg"] = round(truth[f"ndcg@{K}"] / max(pop[f"ndcg@{K}"], 1e-9), 2)
        out[f"{surface}/target_reached"] = bool(student[f"ndcg@{K}"] >= TARGET_LIFT_OVER_POPULARITY * pop[f"ndcg@{K}"]
                                                and student[f"ndcg@{K}"] > raw[f"ndcg@{K}"])
    out["soccer_only_baseball_share"] = confusion["soccer_only_searchers"]["baseball_share"]
    out["confusion"] = confusion
    out["confusion_target_reached"] = out["soccer_only_baseball_share"] <= TARGET_CONFUSION
    out["detail"] = results
    return out

