"""Offline/online parity: features from batch profiles equal features from the published documents."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from hybridrec.features.documents import (
    item_document, item_profile_from_document, user_document, user_profile_from_document,
)
from hybridrec.features.ranking import FEATURE_NAMES, ItemProfile, UserProfile, feature_frame

NOW = datetime(2026, 10, 29, tzinfo=timezone.utc)


def _profiles():
    users = {"u1": UserProfile("u1", topic_affinity={"sports/soccer": 0.7, "sports": 0.7, "music/kpop": 0.3, "music": 0.3},
                               topic_skips={"sports/baseball": 1.0}, interest_tags={"sports/soccer": 1.0},
                               activity=42, items=9, lat=37.5, lon=127.0, content_vector=[0.6, 0.8]),
             "u2": UserProfile("u2")}
    items = {"c1": ItemProfile("c1", "sports/soccer", tags=("sports/soccer", "sports"), popularity=12.5, trending=0.2,
                               created_at=NOW - timedelta(days=3), content_vector=[1.0, 0.0]),
             "p1": ItemProfile("p1", "food/korean/gukbap", popularity=3.0, lat=37.52, lon=127.03),
             "c2": ItemProfile("c2", "sports/baseball", tags=("sports/baseball", "sports"))}
    return users, items


def test_features_survive_the_publish_round_trip():
    users, items = _profiles()
    candidates = pd.DataFrame({"user_id": ["u1", "u1", "u1", "u2"], "item_id": ["c1", "p1", "c2", "c1"],
                               "als_score": [0.9, np.nan, 0.1, 0.3], "als_rank": [1, np.nan, 7, 2],
                               "geo_score": [np.nan, 2.0, np.nan, np.nan], "geo_rank": [np.nan, 1, np.nan, np.nan]})
    offline = feature_frame(candidates, users, items, now=NOW)

    published_users = {u: user_profile_from_document(user_document(p, [0.1, 0.2], [], [], "run"))
                       for u, p in users.items()}
    published_items = {i: item_profile_from_document(item_document(p, "clip", {}, [0.3, 0.4], [], "run"))
                       for i, p in items.items()}
    online = feature_frame(candidates, published_users, published_items, now=NOW)

    assert list(offline.columns) == list(FEATURE_NAMES)
    pd.testing.assert_frame_equal(offline, online)
    assert offline.loc[0, "topic_affinity"] == 0.7 and offline.loc[2, "topic_skip_share"] == 1.0
    assert np.isnan(offline.loc[0, "distance_km"]) and 2 < offline.loc[1, "distance_km"] < 5


def test_request_location_overrides_home():
    users, items = _profiles()
    candidates = pd.DataFrame({"user_id": ["u1"], "item_id": ["p1"]})
    at_home = feature_frame(candidates, users, items, now=NOW)
    on_the_spot = feature_frame(candidates, users, items, now=NOW, location={"u1": (37.52, 127.03)})
    assert on_the_spot.loc[0, "distance_km"] < 0.01 < at_home.loc[0, "distance_km"]


def test_zero_vectors_are_not_published():
    users, items = _profiles()
    doc = item_document(items["p1"], "place", {}, [0.0, 0.0], [], "run")
    assert "cf_vector" not in doc and "content_vector" not in doc
