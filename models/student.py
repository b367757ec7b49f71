"""Small, fast text models distilled from the teacher: the query student and the hierarchical topic classifier.

Both are sparse linear models over character and word n-grams. Character n-grams of each word
(with boundary marks) survive typos ("socer" shares most of its n-grams with "soccer") and Korean
particles ("축구가" starts like "축구"); word uni- and bigrams carry phrases. Scoring a query is a
sum of a few dozen weight rows, tens of microseconds on one core, which is what the hot path of
the stream and the feed can afford; the teacher reads documents and embeds phrases.

* :class:`QueryStudent`: intent (softmax) and interest tags (one sigmoid per tag) of a query.
* :class:`TopicClassifier`: one topic path (``sports/soccer``) for a clip or a query, one softmax
  per taxonomy node; it descends while it is sure and stops at the broader topic otherwise.

Weights are fitted with L-BFGS on an L2-regularised log loss; a model file is one ``.npz`` holding
its weights and a JSON header (vocabulary, labels, provenance).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import scipy.optimize
import scipy.sparse as sp

from hybridrec.contract import INTENTS, QueryIntent
from hybridrec.taxonomy import most_specific

FEATURE_VERSION = 1
CHAR_NGRAMS = (2, 3, 4)
_WORD = re.compile(r"[^\s,.!?#\"'()\[\]{}:;/|~]+")


WORD_CACHE_SIZE = 65_536  # distinct words whose known feature indices each vocabulary keeps


def words_of(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def word_features(word: str) -> list[str]:
    """The word's unigram and its boundary-marked character n-grams."""
    padded = f"<{word}>"
    return [f"w:{word}", *(padded[i:i + n] for n in CHAR_NGRAMS for i in range(len(padded) - n + 1))]


def bigram_features(words: Sequence[str]) -> list[str]:
    return [f"b:{a} {b}" for a, b in zip(words, words[1:])]


def text_features(text: str) -> list[str]:
    """Word unigrams and bigrams plus boundary-marked character n-grams of every word."""
    words = words_of(text)
    return [*itertools.chain.from_iterable(map(word_features, words)), *bigram_features(words)]


@dataclass
class Vocabulary:
    """Feature strings seen at least ``min_count`` times in training; others are ignored at prediction.

    A word's known features are looked up once and kept (:data:`WORD_CACHE_SIZE` words): queries
    share most of their words, and building the character n-grams was most of a prediction."""

    index: dict[str, int]

    def __post_init__(self) -> None:
        self._word_rows = functools.lru_cache(maxsize=WORD_CACHE_SIZE)(self._known_of_word)

    def _known_of_word(self, word: str) -> tuple[int, ...]:
        return tuple(i for i in map(self.index.get, word_features(word)) if i is not None)

    @classmethod
    def fit(cls, texts: Iterable[str], min_count: int) -> "Vocabulary":
        counts = Counter(f for text in texts for f in set(text_features(text)))
        kept = sorted(f for f, n in counts.items() if n >= min_count)
        return cls({f: i for i, f in enumerate(kept)})

    def __len__(self) -> int:
        return len(self.index)

    def row(self, text: str) -> list[int]:
        """Indices of the text's known features, each once."""
        words = words_of(text)
        known = set(itertools.chain.from_iterable(map(self._word_rows, words)))
        known.update(map(self.index.get, bigram_features(words)))
        known.discard(None)
        return list(known)

    def rows_of(self, features: Iterable[str]) -> list[int]:
        """Indices of the known features among ``features``, each once."""
        return list({i for i in map(self.index.get, features) if i is not None})

    def matrix(self, texts: Sequence[str]) -> sp.csr_matrix:
        return unit_matrix([self.row(t) for t in texts], len(self))


def unit_matrix(rows: Sequence[Sequence[int]], width: int) -> sp.csr_matrix:
    """Binary features, each row scaled to unit length so long texts do not shout."""
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(indptr[-1]))
    values = np.repeat(1 / np.sqrt(np.maximum(lengths, 1)), lengths).astype(np.float32)
    return sp.csr_matrix((values, indices, indptr), shape=(len(rows), width))


@dataclass
class LinearHead:
    """Weights [features, labels] and a bias; ``kind`` says how scores become probabilities."""

    weights: np.ndarray
    bias: np.ndarray
    kind: str  # "softmax" (one label) | "sigmoid" (any number of labels)

    def probabilities_of_row(self, row: list[int]) -> np.ndarray:
        scores = self.bias + (self.weights[row].sum(axis=0) / np.sqrt(len(row)) if len(row) else 0.0)
        return _activate(scores[None, :], self.kind)[0]

    def probabilities(self, x: sp.csr_matrix) -> np.ndarray:
        """One row of probabilities per row of ``x`` (unit-scaled features, as :func:`unit_matrix` builds)."""
        return _activate(np.asarray(x @ self.weights) + self.bias, self.kind)


def _activate(scores: np.ndarray, kind: str) -> np.ndarray:
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-np.clip(scores, -30, 30)))
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def fit_head(x: sp.csr_matrix, targets: np.ndarray, kind: str, l2: float, max_iter: int = 300) -> LinearHead:
    """Minimise mean log loss + l2/2·|W|² with L-BFGS. ``targets``: class ids (softmax) or a 0/1 matrix (sigmoid)."""
    n, d = x.shape
    y = np.eye(int(targets.max()) + 1, dtype=np.float64)[targets] if kind == "softmax" else targets.astype(np.float64)
    k = y.shape[1]
    xt = x.T.tocsr()

    def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: d * k].reshape(d, k), theta[d * k:]
        p = np.clip(_activate(np.asarray(x @ w) + b, kind), 1e-12, 1 - 1e-12)
        if kind == "softmax":
            loss = -np.sum(y * np.log(p)) / n
        else:
            loss = -np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)) / n
        residual = (p - y) / n
        grad_w = np.asarray(xt @ residual) + l2 * w
        return loss + 0.5 * l2 * float(np.sum(w * w)), np.concatenate([grad_w.ravel(), residual.sum(axis=0)])

    result = scipy.optimize.minimize(loss_and_grad, np.zeros(d * k + k), jac=True, method="L-BFGS-B",
                                     options={"maxiter": max_iter})
    theta = result.x
    return LinearHead(theta[: d * k].reshape(d, k).astype(np.float32), theta[d * k:].astype(np.float32), kind)


class StudentTags(NamedTuple):
    intent: QueryIntent
    tags: tuple[str, ...]
    confidence: float  # probability of the predicted intent


@dataclass
class QueryStudent:
    """Intent and interest tags of a query from its text alone."""

    vocabulary: Vocabulary
    intent_head: LinearHead
    tag_head: LinearHead
    tag_names: tuple[str, ...]
    threshold: float
    max_tags: int
    header: dict[str, Any] = field(default_factory=dict)  # provenance: teacher, data, metrics

    def __post_init__(self) -> None:
        # Both heads in one matrix: one gather and one sum per query; tags compared as logits, no sigmoid.
        self._weights = np.hstack([self.intent_head.weights, self.tag_head.weights])
        self._bias = np.concatenate([self.intent_head.bias, self.tag_head.bias])
        self._intents = len(INTENTS)
        self._intent_members = [QueryIntent(i) for i in INTENTS]
        self._tag_logit = float(np.log(self.threshold / (1 - self.threshold)))

    @classmethod
    def fit(cls, texts: Sequence[str], intents: Sequence[str], tags: Sequence[Sequence[str]], *, min_count: int,
            l2: float, threshold: float, max_tags: int) -> "QueryStudent":
        vocabulary = Vocabulary.fit(texts, min_count)
        x = vocabulary.matrix(texts)
        tag_names = tuple(sorted({t for ts in tags for t in ts}))
        position = {t: i for i, t in enumerate(tag_names)}
        y_tags = np.zeros((len(texts), len(tag_names)), dtype=np.float32)
        for row, ts in enumerate(tags):
            y_tags[row, [position[t] for t in ts]] = 1
        intent_head = fit_head(x, np.array([INTENTS.index(i) for i in intents]), "softmax", l2)
        interest = np.array([i == QueryIntent.INTEREST.value for i in intents])
        tag_head = fit_head(x[interest], y_tags[interest], "sigmoid", l2)
        return cls(vocabulary, intent_head, tag_head, tag_names, threshold, max_tags)

    def predict(self, text: str) -> StudentTags:
        """One query on the hot path: one gather and sum in numpy, the rest on a few dozen Python floats."""
        row = self.vocabulary.row(text)
        scores = self._bias if not row else (
            np.add.reduce(self._weights.take(row, axis=0), axis=0) * len(row) ** -0.5 + self._bias)
        values = scores.tolist()
        intent_scores, tag_scores = values[: self._intents], values[self._intents:]
        top = max(intent_scores)
        exps = [math.exp(x - top) for x in intent_scores]
        intent = self._intent_members[exps.index(1.0)]
        confidence = 1.0 / sum(exps)
        if intent is not QueryIntent.INTEREST:
            return StudentTags(intent, (), confidence)
        above = [i for i, score in enumerate(tag_scores) if score >= self._tag_logit]
        best = sorted(above, key=tag_scores.__getitem__, reverse=True)[: self.max_tags]
        return StudentTags(intent, most_specific(self.tag_names[i] for i in best), confidence)

    def save(self, path: Path) -> Path:
        header = {"kind": "query-student", "feature_version": FEATURE_VERSION, "tags": self.tag_names,
                  "threshold": self.threshold, "max_tags": self.max_tags, **self.header}
        return _save(path, self.vocabulary, header, {"intent": self.intent_head, "tags": self.tag_head})

    @classmethod
    def load(cls, path: Path) -> "QueryStudent":
        vocabulary, header, heads = _load(path, "query-student")
        return cls(vocabulary, heads["intent"], heads["tags"], tuple(header.pop("tags")), header.pop("threshold"),
                   header.pop("max_tags"), header)


class TopicPrediction(NamedTuple):
    path: str  # "" when not even the top level is certain
    confidence: float  # product of the probabilities along the path


@dataclass
class TopicClassifier:
    """One softmax per taxonomy node over its child topics; prediction walks down from the roots."""

    vocabulary: Vocabulary
    heads: dict[str, LinearHead]  # node path ("" = the roots) → head over its children
    children: dict[str, tuple[str, ...]]
    min_confidence: float
    header: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, texts: Sequence[str], paths: Sequence[str], *, min_count: int, l2: float,
            min_confidence: float) -> "TopicClassifier":
        vocabulary = Vocabulary.fit(texts, min_count)
        x = vocabulary.matrix(texts)
        # Every labelled path teaches each node on its way: "sports/soccer" teaches "" → sports → soccer.
        examples: dict[str, list[tuple[int, str]]] = {}
        for row, path in enumerate(paths):
            parts = path.split("/")
            for depth in range(len(parts)):
                examples.setdefault("/".join(parts[:depth]), []).append((row, "/".join(parts[: depth + 1])))
        heads, children = {}, {}
        for node, rows in sorted(examples.items()):
            labels = tuple(sorted({child for _, child in rows}))
            children[node] = labels
            if len(labels) > 1:
                position = {c: i for i, c in enumerate(labels)}
                heads[node] = fit_head(x[[r for r, _ in rows]], np.array([position[c] for _, c in rows]), "softmax", l2)
        return cls(vocabulary, heads, children, min_confidence)

    def predict_clips(self, titles: Iterable[str], descriptions: Iterable[str | None]) -> list[str]:
        """Topic path of each clip, read from its title and description joined as the distill job joins
        them for training (``concat_ws('. ', title, description)``)."""
        return [self.predict(f"{t}. {d}" if d else t).path for t, d in zip(titles, descriptions)]

    def predict(self, text: str) -> TopicPrediction:
        row = self.vocabulary.row(text)
        node, confidence = "", 1.0
        while node in self.children:
            labels = self.children[node]
            if node in self.heads:
                p = self.heads[node].probabilities_of_row(row)
                best = int(np.argmax(p))
                if confidence * p[best] < self.min_confidence:
                    break
                node, confidence = labels[best], confidence * float(p[best])
            else:
                node = labels[0]  # an only child: nothing to decide
        return TopicPrediction(node, confidence if node else 0.0)

    def save(self, path: Path) -> Path:
        header = {"kind": "topic-classifier", "feature_version": FEATURE_VERSION, "children": self.children,
                  "min_confidence": self.min_confidence, **self.header}
        return _save(path, self.vocabulary, header, {f"node:{n}": h for n, h in self.heads.items()})

    @classmethod
    def load(cls, path: Path) -> "TopicClassifier":
        vocabulary, header, heads = _load(path, "topic-classifier")
        children = {node: tuple(labels) for node, labels in header.pop("children").items()}
        return cls(vocabulary, {k.removeprefix("node:"): h for k, h in heads.items()}, children,
                   header.pop("min_confidence"), header)


def _save(path: Path, vocabulary: Vocabulary, header: Mapping[str, Any], heads: Mapping[str, LinearHead]) -> Path:
    """Written to a temporary name and renamed, so a reader never sees half a model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for name, head in heads.items():
        arrays[f"{name}.weights"], arrays[f"{name}.bias"] = head.weights, head.bias
    meta = {**header, "vocabulary": sorted(vocabulary.index, key=vocabulary.index.__getitem__),
            "heads": {name: head.kind for name, head in heads.items()}}
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as out:
        np.savez_compressed(out, header=np.array(json.dumps(meta, ensure_ascii=False)), **arrays)
    partial.replace(path)
    return path


def _load(path: Path, kind: str) -> tuple[Vocabulary, dict[str, Any], dict[str, LinearHead]]:
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(str(data["header"]))
        if header.get("kind") != kind or header.get("feature_version") != FEATURE_VERSION:
            raise ValueError(f"{path} is not a {kind} of feature version {FEATURE_VERSION} "
                             f"(found {header.get('kind')!r}, version {header.get('feature_version')!r})")
        heads = {name: LinearHead(data[f"{name}.weights"], data[f"{name}.bias"], k)
                 for name, k in header.pop("heads").items()}
    vocabulary = Vocabulary({f: i for i, f in enumerate(header.pop("vocabulary"))})
    header.pop("kind"), header.pop("feature_version")
    return vocabulary, header, heads
