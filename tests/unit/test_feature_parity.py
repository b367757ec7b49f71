"""Offline/online parity: features from batch profiles equal features from the published documents."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from hybridrec.features.documents import (
    item_document, item_profile_from_document, user_document, user_profile_from_document,
)
from hybridrec.features.ranking import FEATURE_NAMES, ItemProfile, UserProfile, feature_frame, feature_matrix

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

    published_users = {u: user_profile_from_document(user_document(p, [0.1, 0.2], [], [], [], "run"))
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


def test_each_row_reads_its_own_user_and_item():
    """Rows of several users over shared items: per-row values, as a per-pair loop would give them."""
    users, items = _profiles()
    users["u3"] = UserProfile("u3", topic_affinity={"sports/baseball": 0.5, "sports": 0.5},
                              interest_tags={"sports": 0.25, "sports/baseball": 0.75}, content_vector=[0.0, 2.0])
    rows = [("u1", "c1"), ("u3", "c1"), ("u2", "c2"), ("u3", "c2"), ("u1", "p1"), ("u1", "missing")]
    candidates = pd.DataFrame(rows, columns=["user_id", "item_id"])
    frame = feature_frame(candidates, users, items, now=NOW)

    assert frame["topic_affinity"].tolist() == [0.7, 0.0, 0.0, 0.5, 0.0, 0.0]
    assert frame["parent_topic_affinity"].tolist() == [0.7, 0.5, 0.0, 0.5, 0.0, 0.0]
    assert frame["tag_overlap"].tolist() == [1.0, 0.25, 0.0, 1.0, 0.0, 0.0]
    np.testing.assert_allclose(frame["content_similarity"], [0.6, 0.0, np.nan, np.nan, np.nan, np.nan])
    assert frame["item_popularity"].tolist()[:2] == [np.log1p(12.5)] * 2
    assert frame["user_activity"].tolist()[0] == np.log1p(42) and frame["user_activity"].tolist()[1] == 0.0


def test_serving_columns_give_the_batch_frame():
    """Serving hands plain arrays (no DataFrame); the features must not differ."""
    users, items = _profiles()
    candidates = pd.DataFrame({"user_id": ["u1", "u1", "u1"], "item_id": ["c1", "p1", "c2"],
                               "als_score": [0.9, np.nan, 0.1], "als_rank": [1, np.nan, 2]})
    columns = {name: candidates[name].to_numpy() for name in candidates}
    matrix = feature_matrix(columns, users, items, now=NOW, location={"u1": (37.52, 127.03)})
    frame = feature_frame(candidates, users, items, now=NOW, location={"u1": (37.52, 127.03)})
    np.testing.assert_array_equal(matrix, frame.to_numpy())
    assert frame["n_sources"].tolist() == [1.0, 0.0, 1.0]
