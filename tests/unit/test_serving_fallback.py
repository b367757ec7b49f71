"""Degraded feeds: the fallback file a publish writes, and the region, radius and names serving picks from it."""

import json

import pandas as pd
from fastapi.testclient import TestClient

from hybridrec.config import load_settings
from hybridrec.fallback import TITLE_CHARS, fallback_path, surface_lists, write_fallback
from hybridrec.serving.app import create_app
from hybridrec.serving.fallback import FallbackFeed

SEOUL, BUSAN = (37.5665, 126.9780), (35.1796, 129.0756)


def _places() -> tuple[pd.Series, pd.DataFrame]:
    rows = [("p1", "Seoul Sundae House", "seoul", 37.56, 126.97), ("p2", "Myeongdong Cafe", "seoul", 37.57, 126.99),
            ("p3", "Haeundae Raw Fish", "busan", 35.16, 129.16), ("p4", "Seomyeon Dwaeji Gukbap", "busan", 35.158, 129.06),
            ("p5", "x" * 300, "busan", 35.18, 129.08)]
    items = pd.DataFrame(rows, columns=["item_id", "title", "region", "lat", "lon"]).assign(topic_path="food/korean")
    popularity = pd.Series({"p1": 50.0, "p2": 40.0, "p3": 30.0, "p4": 20.0, "p5": 10.0})
    return popularity, items


def _feed(tmp_path) -> FallbackFeed:
    popularity, items = _places()
    clips = pd.DataFrame({"item_id": ["c1", "c2"], "title": ["Derby highlights", "Ramen in 60 s"],
                          "topic_path": ["sports/soccer", "food/japanese"]})
    path = tmp_path / "popular-fallback.json"
    write_fallback(path, {"run_id": "run-1", "place": surface_lists(popularity, items, 10),
                          "clip": surface_lists(pd.Series({"c1": 1.0, "c2": 5.0}), clips, 10)})
    return FallbackFeed(path)


def test_the_published_lists_carry_regions_centres_and_clipped_names():
    popularity, items = _places()
    lists = surface_lists(popularity, items, size=2)
    assert lists["all"] == ["p1", "p2"]
    assert lists["regions"] == {"busan": ["p3", "p4"], "seoul": ["p1", "p2"]}
    assert lists["centres"]["seoul"] == [37.565, 126.98]
    assert lists["items"]["p3"] == {"title": "Haeundae Raw Fish", "topic_path": "food/korean", "region": "busan",
                                    "lat": 35.16, "lon": 129.16}
    assert "p5" not in lists["items"]  # listed nowhere at size 2
    assert len(surface_lists(popularity, items, size=5)["items"]["p5"]["title"]) == TITLE_CHARS


def test_a_busan_location_gets_busan_places_with_names(tmp_path):
    feed = _feed(tmp_path)
    picked = feed.items("place", 10, location=BUSAN)
    assert [i.item_id for i in picked] == ["p3", "p4", "p5"]
    assert picked[0].title == "Haeundae Raw Fish" and {i.region for i in picked} == {"busan"}
    assert [i.item_id for i in feed.items("place", 10, location=SEOUL)] == ["p1", "p2"]


def test_places_within_the_radius_come_first(tmp_path):
    # p4 is ~0.1 km from the request, p5 ~3 km, p3 ~9 km: within 2 km only p4, then by popularity
    near_seomyeon = (35.1577, 129.0594)
    assert [i.item_id for i in _feed(tmp_path).items("place", 3, location=near_seomyeon, radius_km=2.0)] == [
        "p4", "p3", "p5"]


def test_without_a_location_every_allowed_region_answers(tmp_path):
    feed = _feed(tmp_path)
    assert [i.item_id for i in feed.items("place", 3)] == ["p1", "p2", "p3"]
    assert [i.item_id for i in feed.items("place", 3, regions=["busan"])] == ["p3", "p4", "p5"]
    assert [i.item_id for i in feed.items("place", 9, location=SEOUL, regions=["busan"])] == ["p3", "p4", "p5"]
    assert [(i.item_id, i.title) for i in feed.items("clip", 5, exclude=frozenset({"c1"}))] == [("c2", "Ramen in 60 s")]


def test_a_file_of_the_earlier_shape_still_answers_without_names(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"run_id": "r", "place": {"all": ["p1", "p2"], "seoul": ["p1"]}}))
    picked = FallbackFeed(path).items("place", 5, location=BUSAN)
    assert [(i.item_id, i.title) for i in picked] == [("p1", None), ("p2", None)]


def test_a_degraded_place_feed_for_a_busan_location_shows_busan_places_by_name(tmp_path):
    """The whole app with OpenSearch unreachable (a closed port): the feed answers from the file."""
    settings = load_settings(environ={"HYBRIDREC__HOME": str(tmp_path), "HYBRIDREC__OPENSEARCH__PORT": "1",
                                      "HYBRIDREC__KAFKA__PORT": "2", "HYBRIDREC__SERVING__SEARCH_TIMEOUT_S": "0.5",
                                      "HYBRIDREC__SERVING__API_KEYS": '["k1"]'})
    published = _feed(tmp_path)
    fallback_path(settings).parent.mkdir(parents=True, exist_ok=True)
    fallback_path(settings).write_bytes(published.path.read_bytes())
    with TestClient(create_app(settings, warm_item_cache=False)) as client:
        body = client.get("/v1/feed/u1", params={"surface": "place", "lat": BUSAN[0], "lon": BUSAN[1]},
                          headers={"X-API-Key": "k1"}).json()
        ready = client.get("/readyz").json()
    assert body["degraded"] is True and body["run_id"] == "run-1"
    # the default 5 km radius holds p4 and p5, not Haeundae's p3 (~8 km): they come first
    assert [(i["item_id"], i["title"]) for i in body["items"]] == [
        ("p4", "Seomyeon Dwaeji Gukbap"), ("p5", "x" * TITLE_CHARS), ("p3", "Haeundae Raw Fish")]
    assert all(i["reason"] == "popular in busan" for i in body["items"])
    assert ready["checks"]["warm"] is False
