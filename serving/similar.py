"""Items like a given item: k-NN on its content vector (cosine) when published, else on its CF factors
(inner product, the metric the CF index retrieves by)."""

from __future__ import annotations

from typing import Any

from opensearchpy.exceptions import OpenSearchException

from hybridrec.serving.candidates import ITEM_FIELDS
from hybridrec.serving.reasons import tag_label
from hybridrec.serving.store import ServingStore
from hybridrec.taxonomy import Taxonomy


def _similarity(field_name: str, lucene_score: float) -> float:
    """Lucene's k-NN score back to the similarity compared: cosine from (1 + cos) / 2 for content vectors,
    the inner product from 1 + dot (dot >= 0) or 1 / (1 - dot) (dot < 0) for CF factors."""
    if field_name == "content_vector":
        return 2 * lucene_score - 1
    return lucene_score - 1 if lucene_score >= 1 else 1 - 1 / lucene_score


class SimilarItems:
    def __init__(self, store: ServingStore, taxonomy: Taxonomy):
        self.store, self.taxonomy = store, taxonomy

    def find(self, item_id: str, surface: str, limit: int) -> dict[str, Any]:
        """Raises KeyError for an unknown item, LookupError when OpenSearch cannot answer."""
        try:
            item = self.store.get_items(self.store.items_index(surface), [item_id], ITEM_FIELDS).get(item_id)
            if item is None:
                raise KeyError(item_id)
            field_name = "content_vector" if item.get("content_vector") else "cf_vector"
            if not item.get(field_name):
                return {"item_id": item_id, "surface": surface, "by": None, "items": []}
            body = {"size": limit, "_source": ["item_id", "title", "topic_path", "tags"],
                    "query": {"knn": {field_name: {"vector": item[field_name], "k": limit + 1,
                                                   "filter": {"bool": {"must_not": [{"ids": {"values": [item_id]}}]}}}}}}
            hits = self.store.msearch(self.store.items_index(surface), [body])[0]
        except OpenSearchException as err:
            raise LookupError(str(err)) from err
        own = set(item.get("tags") or ())
        items = []
        for hit in hits:
            doc = hit["_source"]
            shared = [tag_label(self.taxonomy, t) for t in doc.get("tags") or () if t in own]
            items.append({"item_id": hit["_id"], "score": round(_similarity(field_name, float(hit["_score"])), 6),
                          "title": doc.get("title"), "topic_path": doc.get("topic_path"),
                          "reason": f"also about {', '.join(repr(s) for s in shared[:2])}" if shared
                          else "liked by the same people"})
        return {"item_id": item_id, "surface": surface, "by": field_name, "items": items}
