"""Shared building blocks of the synthetic world: random streams, the time window, regions, ids and
vectorised weighted sampling."""

from __future__ import annotations

import hashlib
import random
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hybridrec.config import SyntheticSettings

SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US
KM_PER_DEGREE = 111.0


def stream(seed: int, *key: str | int) -> np.random.Generator:
    """An independent generator per (seed, purpose): adding or changing one stream never shifts another's draws."""
    words = [seed % 2**32] + [zlib.crc32(k.encode()) if isinstance(k, str) else k for k in key]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(words)))


def text_random(rng: np.random.Generator) -> random.Random:
    """Python's Random, seeded from a numpy stream: much cheaper per call when assembling strings one by one."""
    return random.Random(int(rng.integers(2**63)))


@dataclass(frozen=True)
class Window:
    """The simulated days, in UTC microseconds."""

    start_us: int
    n_days: int

    @classmethod
    def of(cls, cfg: SyntheticSettings) -> "Window":
        start = datetime.fromisoformat(cfg.start_date).replace(tzinfo=timezone.utc)
        return cls(int(start.timestamp()) * SECOND_US, cfg.n_days)

    @property
    def end_us(self) -> int:
        return self.start_us + self.n_days * DAY_US

    def day_start(self, day: int) -> int:
        return self.start_us + day * DAY_US

    def weekday(self, day: int) -> int:
        return datetime.fromtimestamp(self.day_start(day) / SECOND_US, tz=timezone.utc).weekday()


@dataclass(frozen=True)
class Region:
    key: str
    ko: str
    en: str
    lat: float
    lon: float
    weight: float
    city_ko: str
    streets: tuple[str, ...]

    def name(self, language: str) -> str:
        return self.ko if language == "ko" else self.en


REGIONS: tuple[Region, ...] = (
    Region("seoul-gangnam", "강남", "gangnam", 37.4979, 127.0276, 0.22, "서울 강남구", ("테헤란로", "강남대로", "논현로", "도산대로")),
    Region("seoul-mapo", "마포", "mapo", 37.5563, 126.9236, 0.22, "서울 마포구", ("연남로", "와우산로", "양화로", "독막로")),
    Region("seoul-jongno", "종로", "jongno", 37.5704, 126.9920, 0.14, "서울 종로구", ("삼일대로", "율곡로", "북촌로", "자하문로")),
    Region("seoul-seongsu", "성수", "seongsu", 37.5446, 127.0557, 0.14, "서울 성동구", ("성수이로", "아차산로", "연무장길", "왕십리로")),
    Region("busan-haeundae", "해운대", "haeundae", 35.1631, 129.1635, 0.14, "부산 해운대구", ("해운대로", "달맞이길", "구남로", "중동1로")),
    Region("busan-seomyeon", "서면", "seomyeon", 35.1578, 129.0600, 0.14, "부산 부산진구", ("중앙대로", "서면로", "전포대로", "동천로")),
)
REGION_LAT = np.array([r.lat for r in REGIONS])
REGION_LON = np.array([r.lon for r in REGIONS])
REGION_WEIGHTS = np.array([r.weight for r in REGIONS]) / sum(r.weight for r in REGIONS)


def jitter(rng: np.random.Generator, lat: np.ndarray, lon: np.ndarray, km: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian scatter of ``km`` standard deviation around the given points."""
    n = len(lat)
    dlat = rng.normal(0.0, km, n) / KM_PER_DEGREE
    dlon = rng.normal(0.0, km, n) / (KM_PER_DEGREE * np.cos(np.radians(lat)))
    return np.round(lat + dlat, 6), np.round(lon + dlon, 6)


def format_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded numbers, built in Arrow (a million ids in milliseconds)."""
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, type=pa.int64()), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def opaque_ids(prefix: str, seed: int, purpose: str, n: int) -> pa.Array:
    """``prefix`` + 16 hex digits of a keyed hash (BLAKE2b, keyed by the seed and purpose) of 0..n-1:
    ids that say nothing about order or count and cannot be enumerated, yet the same for the same seed."""
    key = f"{seed}:{purpose}".encode()
    ids = [prefix + hashlib.blake2b(i.to_bytes(8, "little"), digest_size=8, key=key).hexdigest() for i in range(n)]
    if len(set(ids)) != n:  # 64 bits: a collision needs billions of ids, but never serve two users as one
        raise ValueError(f"opaque ids of {purpose} collided for seed {seed}")
    return pa.array(ids, type=pa.string())


def id_width(n: int) -> int:
    return max(5, len(str(max(n - 1, 0))))


def timestamps(us: np.ndarray) -> np.ndarray:
    return np.asarray(us, dtype=np.int64).astype("datetime64[us]")


def zipf_weights(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Long-tail popularity: weight 1/rank^exponent with ranks shuffled over the items."""
    return 1.0 / (rng.permutation(n) + 1.0) ** exponent


def gumbel_top_k(rng: np.random.Generator, log_weights: np.ndarray, rows: int, k: int) -> np.ndarray:
    """``rows`` independent weighted draws of ``k`` distinct columns each, without a Python loop."""
    scores = log_weights[None, :] + rng.gumbel(size=(rows, len(log_weights)))
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def sample_rows(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One column index per row of ``weights`` (rows × k), proportional to the row; -1 where a row is all zero."""
    cum = np.cumsum(weights, axis=1)
    total = cum[:, -1]
    u = rng.random(len(weights)) * total
    picked = (cum <= u[:, None]).sum(axis=1)
    return np.where(total > 0, np.minimum(picked, weights.shape[1] - 1), -1)


class SegmentSampler:
    """Weighted draws of items within segments (a topic, a region, a region×category cell).

    Items are laid out segment by segment with their within-segment cumulative weight shifted by the
    segment number, so one ``searchsorted`` answers any mix of segments at once.
    """

    def __init__(self, segment_of_item: np.ndarray, weights: np.ndarray, n_segments: int) -> None:
        self.order = np.argsort(segment_of_item, kind="stable")
        segments = segment_of_item[self.order]
        w = np.asarray(weights, dtype=np.float64)[self.order]
        self.counts = np.bincount(segments, minlength=n_segments)
        starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        cum = np.cumsum(w)
        base = np.repeat(np.concatenate([[0.0], cum])[starts], self.counts)
        totals = np.bincount(segments, weights=w, minlength=n_segments)
        within = (cum - base) / np.where(totals > 0, totals, 1.0)[segments]
        ends = starts[self.counts > 0] + self.counts[self.counts > 0] - 1
        within[ends] = 1.0
        self._keys = segments + within

    def sample(self, rng: np.random.Generator, segments: np.ndarray) -> np.ndarray:
        """One item per requested segment; -1 for empty or negative segments."""
        segments = np.asarray(segments, dtype=np.int64)
        valid = (segments >= 0) & (self.counts[np.maximum(segments, 0)] > 0)
        u = np.minimum(rng.random(len(segments)), 1.0 - 1e-9)
        pos = np.searchsorted(self._keys, segments + u, side="right")
        return np.where(valid, self.order[np.minimum(pos, len(self.order) - 1)], -1)


def sample_with_fallback(rng: np.random.Generator, chain: list[tuple[SegmentSampler, np.ndarray]]) -> np.ndarray:
    """Try each (sampler, segments) in turn for the draws still unresolved: a finer cell, then a coarser one."""
    result = np.full(len(chain[0][1]), -1, dtype=np.int64)
    for sampler, segments in chain:
        todo = result < 0
        if not todo.any():
            break
        result[todo] = sampler.sample(rng, segments[todo])
    return result
