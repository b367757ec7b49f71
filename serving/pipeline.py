"""The feed request as named, timed steps: (queue →) load → candidates → rank → rules → respond.

* queue: from reaching the app to the pipeline's start (waiting for a slot, the thread hop);
* load: the user's published document and real-time context, one ``_mget``;
* candidates: the per-user sources in one ``_msearch``, the shared lists and the item cache
  (:mod:`hybridrec.serving.candidates`), pooled as the retrain pools them (:mod:`hybridrec.features.candidates`);
* rank: :func:`hybridrec.features.ranking.feature_matrix` — the batch feature code — and the
  LightGBM ranker of the run the index was published by (or the experiment variant's);
* rules: seen/skipped removal, topic consistency, opening hours, caps and MMR diversity;
* respond: reasons and the response body.

Any failure of OpenSearch or the model turns the answer into the local fallback list with
``degraded: true`` (and a metric): the feed answers, and never pretends to be personalised. So
does a request that waited too long for the server (:meth:`FeedPipeline.shed`).
"""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np
from opensearchpy.exceptions import OpenSearchException

from hybridrec.config import ExperimentVariant, Settings
from hybridrec.features.documents import user_profile_from_document
from hybridrec.features.ranking import SOURCES, UserProfile, feature_matrix
from hybridrec.serving import cold_start, rules
from hybridrec.serving.candidates import Candidates, CandidateRequest, GlobalLists, ItemCache, gather
from hybridrec.experiments import assign
from hybridrec.serving.fallback import FallbackFeed
from hybridrec.serving.metrics import ServingMetrics
from hybridrec.serving.models import ModelUnavailable, RankerRegistry, ServedModel
from hybridrec.serving.reasons import reason
from hybridrec.serving.store import ServingStore
from hybridrec.taxonomy import Taxonomy

log = logging.getLogger(__name__)

UNAVAILABLE = (OpenSearchException, LookupError, ModelUnavailable)


class FeedUnavailable(RuntimeError):
    """Neither the personalised path nor the fallback list can answer."""


@dataclass(frozen=True)
class FeedQuery:
    user_id: str
    surface: str
    limit: int
    lat: float | None = None
    lon: float | None = None
    radius_km: float | None = None
    personal_reasons: bool = False  # the caller proved to be this user: reasons may name their searches, likes

    @property
    def location(self) -> tuple[float, float] | None:
        return (self.lat, self.lon) if self.lat is not None and self.lon is not None else None


@dataclass
class UserState:
    profile: UserProfile
    context: dict[str, Any] | None
    request: CandidateRequest
    segment: str
    searched: dict[str, float]


class Stages:
    """Wall time per named step, kept for the response and observed into the stage histogram."""

    def __init__(self, metrics: ServingMetrics):
        self.metrics, self.ms = metrics, {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record(name, time.perf_counter() - start)

    def record(self, name: str, elapsed_s: float) -> None:
        self.ms[name] = round(elapsed_s * 1000, 2)
        self.metrics.stage_seconds.labels(name).observe(elapsed_s)


class FeedPipeline:
    def __init__(self, settings: Settings, store: ServingStore, rankers: RankerRegistry, fallback: FallbackFeed,
                 metrics: ServingMetrics, taxonomy: Taxonomy, warm_item_cache: bool = True):
        self.settings, self.cfg = settings, settings.serving
        self.store, self.rankers, self.fallback = store, rankers, fallback
        self.metrics, self.taxonomy = metrics, taxonomy
        self.items, self.warm_item_cache = ItemCache(store), warm_item_cache
        self.pool_cfg = settings.candidates
        self.global_lists = GlobalLists(store, self.cfg.model_check_interval_s, self.pool_cfg.per_source * 3)

    def variant(self, user_id: str) -> ExperimentVariant:
        return assign(self.cfg.experiment_name, self.cfg.experiments, user_id)

    def feed(self, query: FeedQuery, arrived: float | None = None) -> dict[str, Any]:
        """The personalised feed; ``arrived`` (``time.perf_counter()`` when the request reached the app)
        adds the time it waited before this started as the ``queue`` stage."""
        variant = self.variant(query.user_id)
        stages = Stages(self.metrics)
        if arrived is not None:
            stages.record("queue", time.perf_counter() - arrived)
        state: UserState | None = None
        try:
            model = self._model(query.surface, variant)
            if self.warm_item_cache:
                self.items.warm_in_background(model.items_index)
            with stages.stage("load"):
                state = self._load(query, model)
            with stages.stage("candidates"):
                candidates = self._candidates(query, state)
            for source, count in candidates.counts().items():
                self.metrics.candidates.labels(query.surface, source).inc(count)
            with stages.stage("rank"):
                ranked = self._rank(query, state, candidates, model, variant)
            with stages.stage("rules"):
                picked = self._rules(query, state, candidates, ranked, variant)
        except UNAVAILABLE as err:
            return self._degraded(query, variant, err, stages, state)
        with stages.stage("respond"):
            body = self._respond(query, state, candidates, dict(ranked), picked, model, variant)
        body["timings_ms"] = stages.ms
        return body

    def warm(self, surface: str, recheck: bool = False) -> None:
        """Pay once, before serving, what a first feed of the surface would pay (:meth:`warm_model` of the
        served model). Raises what a feed would degrade on."""
        self.warm_model(surface, self.rankers.served(surface, recheck=recheck))

    def warm_model(self, surface: str, model: ServedModel) -> None:
        """The ranker, the item cache (when this pipeline keeps one), the shared lists, and one candidate
        gathering and ranking for a user of ``model``'s run, i.e. every source's first query (on a cold
        index slower than the search timeout). Nothing is counted in the metrics. Also what a newly
        published run goes through before it serves (:attr:`RankerRegistry.prepare`)."""
        if self.warm_item_cache:
            self.items.fill(model.items_index)
        probe = {"size": 1, "query": {"exists": {"field": "cf_vector"}}, "_source": False}
        users = self.store.msearch(model.users_index, [probe])[0]
        query = FeedQuery(users[0]["_id"] if users else "warm-up", surface, self.cfg.default_limit)
        state = self._load(query, model)
        candidates = self._candidates(query, state)
        self._rank(query, state, candidates, model, self.variant(query.user_id))

    def pool(self, query: FeedQuery, now: datetime) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The candidate columns and ranker features of ``query`` as of ``now``, as a feed computes them:
        what the parity test compares with the retrain's rows for the same user and time."""
        state = self._load(query, self.rankers.served(query.surface))
        candidates = self._candidates(query, state)
        return candidates.frame(), self._features(query, state, candidates, now)

    def _candidates(self, query: FeedQuery, state: UserState) -> Candidates:
        """Every source's items, pooled as in batch. A feed asking for more than a third of the pool gets a
        deeper cut of the same fused order (ranks are the sources' own, so no row's features change)."""
        candidates = gather(self.store, self.items, self.global_lists, state.request)
        candidates.pool(query.user_id, self.pool_cfg.per_source, max(self.pool_cfg.pool_size, 3 * query.limit))
        return candidates

    def _features(self, query: FeedQuery, state: UserState, candidates: Candidates, now: datetime) -> np.ndarray:
        location = {query.user_id: query.location} if query.location else None
        return feature_matrix(candidates.frame(), {query.user_id: state.profile}, candidates.profiles, now, location)

    def _model(self, surface: str, variant: ExperimentVariant) -> ServedModel:
        served = self.rankers.served(surface)
        if variant.ranker_run and variant.ranker_run != served.run_id:
            return ServedModel(variant.ranker_run, self.rankers.ranker(variant.ranker_run, surface), served.content_dim,
                               served.items_index, served.users_index)
        return served

    def _load(self, query: FeedQuery, model: ServedModel) -> UserState:
        user_doc, context = self.store.load_user(model.users_index, query.user_id)
        profile = user_profile_from_document(user_doc) if user_doc else UserProfile(query.user_id)
        recent = [e for e in (context or {}).get("engaged", ()) if e.get("surface") == query.surface]
        skipped = {e["item_id"] for e in (context or {}).get("skipped", ()) if e.get("surface") == query.surface}
        seen = list((user_doc or {}).get("seen", ()))
        exclude = frozenset(seen) | {e["item_id"] for e in recent} | skipped
        published_seeds = [i for i in (user_doc or {}).get("covisit_seeds", ()) if i not in skipped]
        seeds = list(dict.fromkeys([e["item_id"] for e in recent] + published_seeds))
        content_vectors = [v for v in (profile.content_vector, ((context or {}).get("interest") or {}).get("vector"))
                           if v and model.content_dim and len(v) == model.content_dim]
        if profile.content_vector:  # an array once here, not a list converted per candidate by the features
            profile = replace(profile, content_vector=np.asarray(profile.content_vector, dtype=np.float64))
        location = query.location or (
            (profile.lat, profile.lon) if profile.lat is not None and profile.lon is not None else None)
        tags = cold_start.interest_tags(profile, context, self.pool_cfg.interest_tags)
        keywords = cold_start.search_keywords(context, self.pool_cfg.interest_tags)
        cf_vector = (user_doc or {}).get("cf_vector")
        region_filter = ({"terms": {"region": list(self.cfg.regions)}},) if query.surface == "place" and self.cfg.regions else ()
        request = CandidateRequest(
            user_id=query.user_id, surface=query.surface, index=model.items_index,
            depth=self.pool_cfg.per_source, exclude=exclude, cf_vector=cf_vector, content_vectors=tuple(content_vectors),
            topic_affinity={t: a for t, a in profile.topic_affinity.items() if "/" in t or t in self.taxonomy},
            interest_tags=tags, interest_keywords=keywords, graph=tuple((g["item_id"], float(g["score"])) for g in (user_doc or {}).get("graph_candidates", ())),
            covisit_seeds=tuple(seeds[: self.pool_cfg.covisit_seed_items]), location=location,
            radius_km=query.radius_km or self.pool_cfg.geo_radius_km, item_filter=region_filter,
            exact_vectors=self.pool_cfg.exact_vectors)
        segment = cold_start.segment(profile, bool(cf_vector), tags, context, keywords,
                                     self.settings.retrain.heavy_user_items)
        return UserState(profile, context, request, segment, cold_start.search_interests(context))

    def _rank(self, query: FeedQuery, state: UserState, candidates: Candidates, model: ServedModel,
              variant: ExperimentVariant) -> list[tuple[str, float]]:
        if not candidates.items:
            return []
        frame = candidates.frame()
        if variant.use_ranker:
            scores = model.ranker.score(self._features(query, state, candidates, datetime.now(timezone.utc)))
        else:
            scores = frame["fused"]
        order = np.argsort(-scores, kind="stable")
        ids = frame["item_id"]
        return [(ids[i], float(scores[i])) for i in order]

    def _rules(self, query: FeedQuery, state: UserState, candidates: Candidates, ranked: list[tuple[str, float]],
               variant: ExperimentVariant) -> list[str]:
        rule_set = rules.RuleSet.from_settings(self.cfg, query.surface, variant)
        interests = {**{t: w / (sum(state.searched.values()) or 1) for t, w in state.searched.items()},
                     **state.profile.topic_affinity}
        blocked = rules.blocked_topics(self.taxonomy, interests, rule_set.min_topic_share)
        allowed, removed = rules.hard_filters(candidates.items, query.surface, rule_set, blocked,
                                              datetime.now(timezone.utc))
        for rule, count in removed.items():
            self.metrics.rule_removals.labels(rule).inc(count)
        allowed_set = set(allowed)
        return rules.select([r for r in ranked if r[0] in allowed_set], candidates.items, query.limit, rule_set)

    def _respond(self, query: FeedQuery, state: UserState, candidates: Candidates, scores: dict[str, float],
                 picked: list[str], model: ServedModel, variant: ExperimentVariant) -> dict[str, Any]:
        self.metrics.feeds.labels(query.surface, variant.name, "false").inc()
        self.metrics.segments.labels(query.surface, state.segment).inc()
        liked = dict(state.profile.topic_affinity)
        items = []
        for position, item_id in enumerate(picked, start=1):
            doc, sources = candidates.items[item_id], candidates.sources_of(item_id)
            items.append({
                "item_id": item_id, "position": position, "score": round(scores[item_id], 6),
                "sources": sources, "title": doc.get("title"), "topic_path": doc.get("topic_path"),
                "reason": reason(doc, sources, query.surface, liked, state.searched, self.taxonomy,
                                 personal=query.personal_reasons)})
        return {"request_id": uuid.uuid4().hex, "user_id": query.user_id, "surface": query.surface,
                "run_id": model.run_id, "experiment_variant": variant.name, "segment": state.segment,
                "degraded": False, "sources_answered": candidates.counts(),
                "sources_missing": [s for s in SOURCES if s not in candidates.counts()], "items": items}

    def shed(self, query: FeedQuery) -> dict[str, Any]:
        """The fallback answer to a request the server has no time for (:mod:`hybridrec.serving.admission`)."""
        return self._fallback(query, self.variant(query.user_id), "overloaded", "overloaded", Stages(self.metrics))

    def _degraded(self, query: FeedQuery, variant: ExperimentVariant, err: Exception, stages: Stages,
                  state: UserState | None) -> dict[str, Any]:
        kind = err.reason if isinstance(err, ModelUnavailable) else "search"
        log.warning("feed for %s on %s degraded (%s unavailable): %s", query.user_id, query.surface, kind, err)
        if state is None:
            return self._fallback(query, variant, kind, f"{kind} unavailable", stages, err)
        # the user document was read before the failure: its home stands in for a missing location
        return self._fallback(query, variant, kind, f"{kind} unavailable", stages, err, state.request.location,
                              state.request.exclude)

    def _fallback(self, query: FeedQuery, variant: ExperimentVariant, kind: str, why: str, stages: Stages,
                  cause: Exception | None = None, location: tuple[float, float] | None = None,
                  exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
        self.metrics.degraded.labels(query.surface, kind).inc()
        self.metrics.feeds.labels(query.surface, variant.name, "true").inc()
        places = query.surface == "place"
        with stages.stage("fallback"):
            picked = self.fallback.items(query.surface, query.limit, location or query.location,
                                         query.radius_km or self.pool_cfg.geo_radius_km,
                                         self.cfg.regions if places else (), exclude)
        if not picked:
            raise FeedUnavailable(f"{why} and no fallback list at {self.fallback.path}") from cause
        return {"request_id": uuid.uuid4().hex, "user_id": query.user_id, "surface": query.surface,
                "run_id": self.fallback.run_id, "experiment_variant": variant.name, "segment": "unknown",
                "degraded": True, "degraded_reason": why, "sources_answered": {"fallback": len(picked)},
                "sources_missing": list(SOURCES),
                "items": [{"item_id": i.item_id, "position": n, "score": None, "sources": ["fallback"],
                           "title": i.title, "topic_path": i.topic_path,
                           "reason": f"popular in {i.region}" if places and i.region else "popular right now"}
                          for n, i in enumerate(picked, start=1)],
                "timings_ms": stages.ms}
