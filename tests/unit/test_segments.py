"""One set of user segments: the evaluation's rule and a feed request's agree on the same facts."""

import pytest

from hybridrec.features.ranking import UserProfile
from hybridrec.features.segments import SEGMENTS, user_segment
from hybridrec.serving import cold_start
from hybridrec.serving.schemas import FeedResponse


@pytest.mark.parametrize("items, searched, expected", [
    (0, False, "new"), (0, True, "searcher"), (1, False, "light"), (9, True, "light"), (10, False, "heavy"),
])
def test_segment_by_engaged_items_and_searches(items, searched, expected):
    assert user_segment(items, searched, heavy_items=10) == expected


@pytest.mark.parametrize("items, tags", [(0, {}), (0, {"food/ramen": 1.0}), (3, {}), (12, {"food/ramen": 1.0})])
def test_serving_assigns_the_evaluations_segment_from_the_published_profile(items, tags):
    profile = UserProfile("u1", items=items, activity=float(items))
    assert cold_start.segment(profile, items > 0, tags, None, (), heavy_items=10) == user_segment(items, bool(tags), 10)


def test_history_the_published_profile_misses_makes_a_user_light():
    engaged_since = {"engaged": [{"item_id": "c1", "surface": "clip"}]}
    assert cold_start.segment(UserProfile("u1"), False, {}, engaged_since, (), heavy_items=10) == "light"
    assert cold_start.segment(UserProfile("u1", activity=2.0), True, {}, None, (), heavy_items=10) == "light"


def test_the_api_documents_the_shared_names():
    described = FeedResponse.model_fields["segment"].description
    assert all(name in described for name in SEGMENTS) and "warm" not in described
