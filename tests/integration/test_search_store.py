"""The search store against the real OpenSearch with the k-NN plugin (lucene engine)."""

import secrets

import pytest

from hybridrec.search import SearchStore, geo_distance_filter, knn_vector_field

pytestmark = pytest.mark.integration

DOCS = [
    {"item_id": "p1", "text": "rooftop natural wine bar", "vec": [1.0, 0.0, 0.0], "location": {"lat": 37.55, "lon": 126.92}},
    {"item_id": "p2", "text": "quiet gukbap place for solo meals", "vec": [0.0, 1.0, 0.0], "location": {"lat": 37.50, "lon": 127.03}},
    {"item_id": "p3", "text": "omakase sushi for a date", "vec": [0.7, 0.7, 0.0], "location": {"lat": 35.16, "lon": 129.16}},
]
PROPERTIES = {"item_id": {"type": "keyword"}, "text": {"type": "text"}, "vec": knn_vector_field(3),
              "location": {"type": "geo_point"}}


@pytest.fixture
def store(services):
    return SearchStore(services)


@pytest.fixture
def alias(store):
    name = store.alias_name(f"test-{secrets.token_hex(4)}")
    yield name
    store.client.indices.delete(index=f"{name}--*", ignore_unavailable=True)


def _build(store, alias, version, docs=DOCS):
    index = store.create_index(alias, version, PROPERTIES, {"hybridrec.run-id": version})
    assert store.bulk_index(index, docs, "item_id") == len(docs)
    store.finish_index(index)
    return index


def test_knn_bm25_and_geo_through_the_alias(store, alias):
    store.swap_alias(alias, _build(store, alias, "v1"))
    assert [h.id for h in store.knn(alias, "vec", [0.9, 0.1, 0.0], k=2)] == ["p1", "p3"]
    assert store.match(alias, ["text"], "natural wine", k=3)[0].id == "p1"
    seoul = geo_distance_filter(37.53, 126.98, radius_km=20)
    assert {h.id for h in store.knn(alias, "vec", [0.7, 0.7, 0.0], k=3, filter_=seoul)} == {"p1", "p2"}
    assert set(store.get_many(alias, ["p2", "nope"])) == {"p2"}


def test_alias_swap_is_atomic_and_rollback_returns_previous_version(store, alias):
    v1 = _build(store, alias, "v1")
    store.swap_alias(alias, v1)
    v2 = _build(store, alias, "v2", DOCS[:1])
    store.swap_alias(alias, v2)
    assert store.alias_targets(alias) == [v2]
    assert store.rollback(alias) == v1 and store.alias_targets(alias) == [v1]
    with pytest.raises(ValueError, match="oldest"):
        store.rollback(alias)


def test_serving_index_is_never_rebuilt_or_pruned(store, alias):
    v1 = _build(store, alias, "v1")
    store.swap_alias(alias, v1)
    with pytest.raises(ValueError, match="serves"):
        store.create_index(alias, "v1", PROPERTIES, {})
    _build(store, alias, "v2")
    _build(store, alias, "v3")
    assert store.prune(alias, keep=1) == [f"{alias}--v2"]
    assert store.versions(alias) == [v1, f"{alias}--v3"]
