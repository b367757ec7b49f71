"""The retrain's content-signal ablations read what they say: extracted tags, the world's truth, or nothing."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd

from hybridrec.batch.retrain import ContentSignals
from hybridrec.contract import ITEM_KEYWORDS, QUERY_TAGS, SEARCH_QUERIES, TRUTH_ITEM_TAGS, TRUTH_QUERY_LABELS
from hybridrec.lake import Lake
from hybridrec.runinfo import new_run

EARLY, LATE = datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 10, 20, tzinfo=timezone.utc)


def _lake(settings) -> Lake:
    lake, run = Lake(settings), new_run(settings, "test")
    lake.replace(ITEM_KEYWORDS, [ITEM_KEYWORDS.to_arrow({
        "item_id": ["p1", "p1"], "surface": ["place"] * 2, "keyword": ["quiet", "noodles"], "weight": [0.9, 0.8],
        "mentions": [2, 1], "tag": ["mood/lively", None], "aspect": ["mood", None]})], run)  # a misread mood
    lake.replace(TRUTH_ITEM_TAGS, [TRUTH_ITEM_TAGS.to_arrow({
        "item_id": ["p1", "p1"], "tag": ["mood/quiet", "food/korean"], "aspect": ["mood", "topic"]})], run)
    lake.replace(SEARCH_QUERIES, [SEARCH_QUERIES.to_arrow({
        "query_id": ["q1", "q2"], "user_id": ["u1", "u1"], "text": ["quiet cafe", "late"], "ts": [EARLY, LATE]})], run)
    lake.replace(QUERY_TAGS, [QUERY_TAGS.to_arrow({
        "query_id": ["q1", "q2"], "user_id": ["u1", "u1"], "intent": ["interest"] * 2,
        "tags": [["mood/lively"], ["food/cafe"]], "backend": ["offline"] * 2, "content_hash": ["h1", "h2"]})], run)
    lake.replace(TRUTH_QUERY_LABELS, [TRUTH_QUERY_LABELS.to_arrow({
        "query_id": ["q1", "q2"], "intent": ["interest"] * 2, "tags": [["mood/quiet"], ["food/cafe"]]})], run)
    return lake


def test_each_content_source_reads_its_own_tags_as_of_the_cutoff(tmp_lake_settings):
    lake, before, none = _lake(tmp_lake_settings), datetime(2026, 10, 10, tzinfo=timezone.utc), pd.DataFrame(
        columns=["user_id", "item_id", "confidence"])
    extracted = ContentSignals.load(lake, before, none, "extracted")
    assert extracted.item_tags == {"p1": ["mood/lively"]} and extracted.query_tags == {"u1": {"mood/lively": 1.0}}
    truth = ContentSignals.load(lake, before, none, "truth_tags")
    assert truth.item_tags == {"p1": ["food/korean", "mood/quiet"]} and truth.query_tags == {"u1": {"mood/quiet": 1.0}}
    nothing = ContentSignals.load(lake, before, none, "none")
    assert (nothing.item_tags, nothing.query_tags, nothing.item_vectors, nothing.user_vectors) == ({}, {}, {}, {})
