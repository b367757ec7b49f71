"""Popularity-weighted item draws by topic and region, shared by search result clicks and the feeds."""

from __future__ import annotations

import numpy as np

from hybridrec.synthetic.common import REGIONS, SegmentSampler, sample_with_fallback
from hybridrec.synthetic.entities import Clips, Places, Topics


class Catalog:
    def __init__(self, topics: Topics, places: Places, clips: Clips, window_start_us: int) -> None:
        n_topics = len(topics)
        self.places, self.clips, self.n_topics = places, clips, n_topics
        self._clip_by_topic = SegmentSampler(clips.topic, clips.popularity, n_topics)
        self._clip_any = SegmentSampler(np.zeros(len(clips), dtype=np.int64), clips.popularity, 1)
        # Clips uploaded before the window are always available; fresh ones only after their upload.
        old = clips.created_us < window_start_us
        self._old_by_topic = SegmentSampler(np.where(old, clips.topic, n_topics), clips.popularity, n_topics + 1)
        self._old_any = SegmentSampler(np.where(old, 0, 1), clips.popularity, 2)
        self._place_by_cell = SegmentSampler(places.region * n_topics + places.category, places.popularity,
                                             len(REGIONS) * n_topics)
        self._place_by_topic = SegmentSampler(places.category, places.popularity, n_topics)
        self._place_by_region = SegmentSampler(places.region, places.popularity, len(REGIONS))
        self._place_any = SegmentSampler(np.zeros(len(places), dtype=np.int64), places.popularity, 1)

    def clips_on_topic(self, rng: np.random.Generator, topic: np.ndarray, now_us: np.ndarray) -> np.ndarray:
        """Clips of the topic uploaded by ``now_us``; -1 where no clip has that topic."""
        return self.uploaded_by(rng, self._clip_by_topic.sample(rng, topic), now_us)

    def popular_clips(self, rng: np.random.Generator, now_us: np.ndarray) -> np.ndarray:
        return self.uploaded_by(rng, self._clip_any.sample(rng, np.zeros(len(now_us), dtype=np.int64)), now_us)

    def random_clips(self, rng: np.random.Generator, now_us: np.ndarray) -> np.ndarray:
        return self.uploaded_by(rng, rng.integers(0, len(self.clips), len(now_us)), now_us)

    def uploaded_by(self, rng: np.random.Generator, clip: np.ndarray, now_us: np.ndarray) -> np.ndarray:
        """Swap clips not yet uploaded at ``now_us`` for an older clip of the same topic (or any older clip)."""
        early = (clip >= 0) & (self.clips.created_us[np.maximum(clip, 0)] >= now_us)
        if early.any():
            topic = self.clips.topic[clip[early]]
            clip = clip.copy()
            clip[early] = sample_with_fallback(rng, [(self._old_by_topic, topic),
                                                     (self._old_any, np.zeros(len(topic), dtype=np.int64))])
        return clip

    def places_on_topic(self, rng: np.random.Generator, topic: np.ndarray, region: np.ndarray) -> np.ndarray:
        """Places of the category near ``region``, else anywhere; -1 where no topic was given."""
        cell = np.where(topic >= 0, region * self.n_topics + topic, -1)
        return sample_with_fallback(rng, [(self._place_by_cell, cell), (self._place_by_topic, topic)])

    def popular_places(self, rng: np.random.Generator, region: np.ndarray) -> np.ndarray:
        return sample_with_fallback(rng, [(self._place_by_region, region),
                                          (self._place_any, np.zeros(len(region), dtype=np.int64))])
