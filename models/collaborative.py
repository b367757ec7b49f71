"""Collaborative-filtering models behind one small interface.

Orientation is the classic source of silent bugs here (implicit < 0.5 wanted item x user, >= 0.5
wants user x item), so every matrix is named and checked at the boundary:

* ``user_items``: ``scipy.sparse.csr_matrix`` with one row per ``user_index`` and one column per
  ``item_index``; non-zero entries are interactions.
* ``user_index`` / ``item_index``: dense 0-based integer indices into those rows / columns.

A model is fitted once on ``user_items`` and then scores the users it was fitted on; matrices
passed later (``exclude``) must have the fitted shape, so a transposed matrix fails loudly instead
of ranking nonsense.

Models:

* :class:`ALSModel`: implicit-feedback matrix factorisation (``implicit``'s CPU ALS).
* :class:`BSPMModel`: blurring-sharpening process model (Choi et al., SIGIR 2023), a training-free
  graph filter; the strongest model here.
* :class:`GFCFModel`: GF-CF (Shen et al., CIKM 2021), BSPM without its sharpening step.
* :class:`ChebyCFModel`: ChebyCF (Kim et al., SIGIR 2025), a Chebyshev-interpolated low-pass
  graph filter with an ideal low-pass term and degree normalisation.
* :class:`FusionModel`: a weighted sum of other models' per-user standardised scores.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 1024
"""Users scored at once: 1024 x 40,981 items in float32 is 168 MB per dense score block."""


def check_user_items(user_items: Any, name: str = "user_items") -> sp.csr_matrix:
    """Return ``user_items`` as CSR, or raise if it is not a 2-D sparse interaction matrix."""
    if not sp.issparse(user_items) or user_items.ndim != 2:
        raise TypeError(f"{name} must be a 2-D scipy.sparse matrix (rows=user_index, "
                        f"cols=item_index), got {type(user_items).__name__}")
    return user_items.tocsr()


def check_same_shape(user_items: sp.spmatrix, shape: tuple[int, int], name: str) -> None:
    """Raise a ValueError naming the likely cause when ``user_items`` does not have ``shape``."""
    if user_items.shape == shape:
        return
    hint = " (it looks transposed: pass rows=user_index, cols=item_index)" \
        if user_items.shape == shape[::-1] else ""
    raise ValueError(f"{name} has shape {user_items.shape}, expected (n_users, n_items) = "
                     f"{shape}{hint}")


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` highest scores of each row, best first (argpartition + sort of
    the k winners only, O(n_items) per row instead of a full sort)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def mask_items(scores: np.ndarray, user_items: sp.csr_matrix) -> None:
    """Set ``scores[i, j] = -inf`` in place wherever row ``i`` of ``user_items`` has item ``j``."""
    rows = np.repeat(np.arange(user_items.shape[0]), np.diff(user_items.indptr))
    scores[rows, user_items.indices] = -np.inf


class CollaborativeModel(ABC):
    """Fit on ``user_items``; score or recommend for the fitted users.

    Subclasses implement :meth:`_fit` and :meth:`_score`; the public methods do the shape and
    index checks once, here.
    """

    name: str = "model"

    def __init__(self) -> None:
        self.shape: tuple[int, int] | None = None

    @property
    def n_users(self) -> int:
        return self._fitted_shape()[0]

    @property
    def n_items(self) -> int:
        return self._fitted_shape()[1]

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Hyper-parameters, JSON-serialisable, for benchmark reports."""

    def fit(self, user_items: sp.csr_matrix) -> CollaborativeModel:
        """Learn from ``user_items`` (rows=user_index, cols=item_index); returns ``self``."""
        user_items = check_user_items(user_items)
        if user_items.nnz == 0:
            raise ValueError("user_items has no interactions")
        start = time.perf_counter()
        log.info("fitting %s %s on %d users x %d items, %d interactions", self.name,
                 self.params(), *user_items.shape, user_items.nnz)
        self._fit(user_items)
        self.shape = user_items.shape
        log.info("fitted %s in %.1fs", self.name, time.perf_counter() - start)
        return self

    def score(self, user_index: np.ndarray) -> np.ndarray:
        """Dense float32 scores, shape (len(user_index), n_items), for fitted users. Higher is
        better; nothing is excluded. Callers batch ``user_index`` to bound memory."""
        user_index = self._check_user_index(user_index)
        scores = self._score(user_index)
        if scores.shape != (len(user_index), self.n_items):
            raise AssertionError(f"{self.name} returned scores of shape {scores.shape}, expected "
                                 f"{(len(user_index), self.n_items)}")
        return scores

    def recommend(self, user_index: np.ndarray, k: int, exclude: sp.csr_matrix | None = None,
                  batch_size: int = DEFAULT_BATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(item_index, score)`` arrays of shape (len(user_index), k), best first.

        ``exclude`` is a ``user_items`` matrix of the fitted shape (typically the training
        matrix); its items are never returned. A user with fewer than ``k`` eligible items gets
        the remaining slots padded with item ``-1`` and score ``-inf``.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        user_index = self._check_user_index(user_index)
        if exclude is not None:
            exclude = check_user_items(exclude, "exclude")
            check_same_shape(exclude, self.shape, "exclude")
        k = min(k, self.n_items)
        items = np.empty((len(user_index), k), dtype=np.int64)
        scores = np.empty((len(user_index), k), dtype=np.float32)
        for start in range(0, len(user_index), batch_size):
            batch = user_index[start:start + batch_size]
            batch_scores = self._score(batch)
            if exclude is not None:
                mask_items(batch_scores, exclude[batch])
            best = top_k(batch_scores, k)
            best_scores = np.take_along_axis(batch_scores, best, axis=1)
            best[np.isneginf(best_scores)] = -1
            items[start:start + len(batch)] = best
            scores[start:start + len(batch)] = best_scores
        return items, scores

    @abstractmethod
    def _fit(self, user_items: sp.csr_matrix) -> None: ...

    @abstractmethod
    def _score(self, user_index: np.ndarray) -> np.ndarray: ...

    def _fitted_shape(self) -> tuple[int, int]:
        if self.shape is None:
            raise RuntimeError(f"{self.name} is not fitted: call fit(user_items) first")
        return self.shape

    def _check_user_index(self, user_index: np.ndarray) -> np.ndarray:
        user_index = np.asarray(user_index)
        if user_index.ndim != 1 or not np.issubdtype(user_index.dtype, np.integer):
            raise TypeError(f"user_index must be a 1-D integer array, got {user_index.dtype} "
                            f"with shape {user_index.shape}")
        n_users = self.n_users
        if len(user_index) and (user_index.min() < 0 or user_index.max() >= n_users):
            raise IndexError(f"user_index out of range [0, {n_users}) for the fitted user_items")
        return user_index


class ALSModel(CollaborativeModel):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) via ``implicit``'s CPU solver.

    ``alpha`` scales interaction values into confidences (a binary interaction weighs ``alpha``
    against 1 for every unobserved pair). Memory: (n_users + n_items) x factors float32.
    """

    name = "als"

    def __init__(self, factors: int = 128, regularization: float = 0.05, alpha: float = 10.0,
                 iterations: int = 15, random_state: int = 0, num_threads: int = 0,
                 show_progress: bool = True) -> None:
        super().__init__()
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads
        self.show_progress = show_progress
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None

    def params(self) -> dict[str, Any]:
        return {"factors": self.factors, "regularization": self.regularization,
                "alpha": self.alpha, "iterations": self.iterations,
                "random_state": self.random_state}

    def _fit(self, user_items: sp.csr_matrix) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        # implicit parallelises over users itself; a threaded BLAS underneath only contends.
        with threadpool_limits(1, "blas"):
            als = AlternatingLeastSquares(
                factors=self.factors, regularization=self.regularization, alpha=self.alpha,
                iterations=self.iterations, random_state=self.random_state,
                num_threads=self.num_threads)
            als.fit(user_items.astype(np.float32), show_progress=self.show_progress)
        # implicit >= 0.5 takes user x item; an older or changed API would silently swap roles.
        if als.user_factors.shape[0] != user_items.shape[0] or \
                als.item_factors.shape[0] != user_items.shape[1]:
            raise RuntimeError(
                f"implicit returned user_factors {als.user_factors.shape} and item_factors "
                f"{als.item_factors.shape} for user_items {user_items.shape}: orientation changed")
        self.user_factors = np.ascontiguousarray(als.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(als.item_factors, dtype=np.float32)

    def _score(self, user_index: np.ndarray) -> np.ndarray:
        return self.user_factors[user_index] @ self.item_factors.T


class NormalisedGraph:
    """The user-item graph the training-free filters share: binary edges, degrees and the
    symmetrically normalised matrix ``Rn = Du^-1/2 R Di^-1/2`` (CSR and its transpose), whose
    item-item product ``P = Rn^T Rn`` has its spectrum in [0, 1]. ``P`` is never formed: it is
    applied to an (n_items, batch) block as ``Rn^T (Rn y)``."""

    def __init__(self, user_items: sp.csr_matrix) -> None:
        # Graph filters see interactions as unweighted edges.
        binary = user_items.astype(np.float32)
        binary.sum_duplicates()
        binary.eliminate_zeros()
        binary.data[:] = 1.0
        self.binary = binary.tocsr()
        self.user_deg = np.asarray(binary.sum(axis=1)).ravel()
        self.item_deg = np.asarray(binary.sum(axis=0)).ravel()
        # Users or items without interactions get weight 0 rather than a division by zero.
        self.inv_sqrt_user = _inverse_sqrt(self.user_deg)
        self.inv_sqrt_item = _inverse_sqrt(self.item_deg)
        norm = sp.diags(self.inv_sqrt_user) @ binary @ sp.diags(self.inv_sqrt_item)
        self.norm = norm.astype(np.float32).tocsr()
        self.norm_t = self.norm.T.tocsr()

    def item_filter(self, columns: np.ndarray) -> np.ndarray:
        """``P @ columns`` for an (n_items, batch) block."""
        return self.norm_t @ (self.norm @ columns)

    def top_right_singular_vectors(self, rank: int, random_state: int = 0) -> np.ndarray:
        """The top ``rank`` right singular vectors of ``Rn`` as a (rank, n_items) array, strongest
        first: the eigenvectors of ``P`` with the largest eigenvalues (its lowest frequencies)."""
        if rank >= min(self.norm.shape):
            raise ValueError(f"ideal_rank={rank} must be < min(n_users, n_items) = "
                             f"{min(self.norm.shape)}")
        start = time.perf_counter()
        # ARPACK, not PROPACK: PROPACK ran 20 s to 7 min on Gowalla depending on the start
        # vector and rank (and fails outright on very sparse data); ARPACK takes ~90 s at
        # rank 448, predictably.
        # Empty rows and columns change no singular triplet but stall the solvers: drop them.
        rows, cols = np.flatnonzero(self.user_deg), np.flatnonzero(self.item_deg)
        active = self.norm[rows][:, cols].astype(np.float64)
        v0 = np.random.default_rng(random_state).standard_normal(min(active.shape))
        _, singular, active_vt = svds(active, k=rank, solver="arpack", v0=v0,
                                      return_singular_vectors="vh")
        strongest_first = np.argsort(-singular)
        vt = np.zeros((rank, self.norm.shape[1]))
        vt[:, cols] = active_vt[strongest_first]
        log.info("rank-%d SVD of the normalised matrix in %.1fs (sigma %.3f..%.3f)",
                 rank, time.perf_counter() - start, singular.max(), singular.min())
        return vt


class BSPMModel(CollaborativeModel):
    """Blurring-sharpening process model (Choi et al., SIGIR 2023), early-merge form (BSPM-EM).

    With the normalised interaction matrix ``Rn = Du^-1/2 R Di^-1/2`` and the item-item linear
    filter ``P = Rn^T Rn``, a user's binary history ``r`` is

    1. blurred: ``y0 = r P + ideal_weight * r Di^-1/2 V V^T Di^1/2``, where ``V`` holds the top
       ``ideal_rank`` right singular vectors of ``Rn`` (the "ideal low-pass" part of GF-CF);
    2. sharpened: ``dy/dt = -y P`` integrated from 0 to ``sharpen_time`` with
       ``sharpen_steps`` RK4 steps, which pushes scores away from what every user shares.

    For this linear ODE one RK4 step of size h is exactly ``y <- y T4(-hP)`` with ``T4`` the
    4th-order Taylor polynomial of exp, evaluated here by Horner's rule.

    ``P`` is never formed (40,981^2 float32 would be 6.7 GB): ``y P`` is applied as two sparse
    products ``(y Rn^T) Rn``, each O(nnz x batch). Memory: Rn twice (CSR and its transpose,
    ~13 MB on Gowalla), two ``n_items x ideal_rank`` float32 factors (~73 MB at rank 448) and a
    few dense ``batch x n_items`` float32 blocks while scoring (~170 MB each at 1024 users).
    ``sharpen_time=0`` gives GF-CF (:class:`GFCFModel`).
    """

    name = "bspm"

    def __init__(self, ideal_rank: int = 448, ideal_weight: float = 0.2,
                 sharpen_time: float = 2.5, sharpen_steps: int = 1, random_state: int = 0) -> None:
        super().__init__()
        if ideal_rank < 0 or sharpen_time < 0 or sharpen_steps < 1:
            raise ValueError("ideal_rank and sharpen_time must be >= 0, sharpen_steps >= 1")
        self.ideal_rank = ideal_rank
        self.ideal_weight = ideal_weight
        self.sharpen_time = sharpen_time
        self.sharpen_steps = sharpen_steps
        self.random_state = random_state
        self._graph: NormalisedGraph | None = None
        self._ideal_left: np.ndarray | None = None
        self._ideal_right: np.ndarray | None = None

    def params(self) -> dict[str, Any]:
        return {"ideal_rank": self.ideal_rank, "ideal_weight": self.ideal_weight,
                "sharpen_time": self.sharpen_time, "sharpen_steps": self.sharpen_steps}

    def _fit(self, user_items: sp.csr_matrix) -> None:
        graph = self._graph = NormalisedGraph(user_items)
        if self.ideal_rank:
            vt = graph.top_right_singular_vectors(self.ideal_rank, self.random_state)
            self._ideal_left = (graph.inv_sqrt_item[:, None] * vt.T).astype(np.float32)
            self._ideal_right = (vt * np.sqrt(graph.item_deg)[None, :]).astype(np.float32)

    def _score(self, user_index: np.ndarray) -> np.ndarray:
        history = self._graph.binary[user_index]
        # Column layout (n_items x batch) so both sparse products are CSR @ dense.
        y = self._graph.item_filter(np.ascontiguousarray(history.T.toarray()))
        if self.ideal_rank and self.ideal_weight:
            y += self.ideal_weight * (self._ideal_right.T @ (history @ self._ideal_left).T)
        step = self.sharpen_time / self.sharpen_steps
        if step:
            for _ in range(self.sharpen_steps):
                taylor = y
                for order in (4, 3, 2, 1):
                    taylor = y - (step / order) * self._graph.item_filter(taylor)
                y = taylor
        return np.ascontiguousarray(y.T)


class GFCFModel(BSPMModel):
    """GF-CF (Shen et al., CIKM 2021): BSPM's blurring step without sharpening, kept as the
    published training-free baseline that BSPM improves on."""

    name = "gfcf"

    def __init__(self, ideal_rank: int = 256, ideal_weight: float = 0.3,
                 random_state: int = 0) -> None:
        super().__init__(ideal_rank=ideal_rank, ideal_weight=ideal_weight, sharpen_time=0.0,
                         random_state=random_state)

    def params(self) -> dict[str, Any]:
        return {"ideal_rank": self.ideal_rank, "ideal_weight": self.ideal_weight}


class ChebyCFModel(CollaborativeModel):
    """ChebyCF (Kim et al., SIGIR 2025, arXiv:2505.00552): a training-free graph filter whose
    frequency response is a Chebyshev interpolation of a smooth low-pass, on the item graph.

    ``P = Rn^T Rn`` (see :class:`NormalisedGraph`) has eigenvalues ``mu`` in [0, 1], 1 being the
    lowest graph frequency. A user's binary history ``r`` is scored as

        ``s = (h(P) x + ideal_weight * x V V^T) Di^degree_power``, with ``x = r Di^-degree_power``

    * ``h`` is the degree-``order`` polynomial that interpolates the target response
      ``h*(mu) = 1/2 + 1/2 sign(2 mu - 1) |2 mu - 1|^flatness`` at the Chebyshev nodes: a
      non-linear low-pass that a low order approximates well (flatness 1 is ``h = P``, GF-CF's
      linear filter; lower flatness tends to an ideal cut at ``mu = 1/2``). ``h(P) x`` is the
      Chebyshev recurrence on ``L = I - 2P`` (spectrum in [-1, 1]): ``order`` applications of
      ``P``, each two sparse products, so no item x item matrix is formed.
    * ``V`` holds the top ``ideal_rank`` eigenvectors of ``P`` (an ideal low-pass that lifts the
      strongest shared patterns), from a truncated SVD of ``Rn``.
    * ``Di^-degree_power`` before and ``Di^degree_power`` after the filter trade popular items
      against rare ones (0: no normalisation).

    Memory: ``Rn`` twice (~13 MB on Gowalla), one ``n_items x ideal_rank`` float32 factor
    (~84 MB at rank 512) and ~6 dense ``n_items x batch`` float32 blocks while scoring.
    """

    name = "chebycf"

    def __init__(self, order: int = 8, flatness: float = 1.5, ideal_rank: int = 512,
                 ideal_weight: float = 0.2, degree_power: float = 0.4,
                 random_state: int = 0) -> None:
        super().__init__()
        if order < 1 or flatness <= 0 or ideal_rank < 0 or ideal_weight < 0:
            raise ValueError("order must be >= 1, flatness > 0, ideal_rank and ideal_weight >= 0")
        self.order = order
        self.flatness = flatness
        self.ideal_rank = ideal_rank
        self.ideal_weight = ideal_weight
        self.degree_power = degree_power
        self.random_state = random_state
        self.coefficients = chebyshev_coefficients(
            lambda x: low_pass_response((1.0 - x) / 2.0, flatness), order)
        self.graph: NormalisedGraph | None = None
        self.ideal_basis: np.ndarray | None = None  # (ideal_rank, n_items), strongest first

    def params(self) -> dict[str, Any]:
        return {"order": self.order, "flatness": self.flatness, "ideal_rank": self.ideal_rank,
                "ideal_weight": self.ideal_weight, "degree_power": self.degree_power}

    def _fit(self, user_items: sp.csr_matrix) -> None:
        self.graph = NormalisedGraph(user_items)
        if self.ideal_rank and self.ideal_weight:
            vt = self.graph.top_right_singular_vectors(self.ideal_rank, self.random_state)
            self.ideal_basis = np.ascontiguousarray(vt, dtype=np.float32)

    def spectral_filter(self, columns: np.ndarray) -> np.ndarray:
        """``h(P) @ columns`` for an (n_items, batch) block."""
        return combine_terms(self.coefficients, self.chebyshev_terms(columns, self.order))

    def chebyshev_terms(self, columns: np.ndarray, order: int) -> Iterator[np.ndarray]:
        """``T_0(L) columns, ..., T_order(L) columns`` for ``L = I - 2P``, by the recurrence
        ``T_{k+1} = 2 L T_k - T_{k-1}``; a sweep over filter shapes reuses them."""
        if self.graph is None:
            raise RuntimeError(f"{self.name} is not fitted: call fit(user_items) first")
        previous = columns
        yield previous
        current = columns - 2.0 * self.graph.item_filter(columns)
        yield current
        for _ in range(2, order + 1):
            previous, current = current, \
                2.0 * (current - 2.0 * self.graph.item_filter(current)) - previous
            yield current

    def degree_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """Item weights applied before and after the filter: ``Di^-degree_power``,
        ``Di^degree_power`` (0 for items without interactions)."""
        degree = self.graph.item_deg
        seen = degree > 0
        safe = np.where(seen, degree, 1.0)
        return (np.where(seen, safe ** -self.degree_power, 0.0).astype(np.float32),
                np.where(seen, safe ** self.degree_power, 0.0).astype(np.float32))

    def _score(self, user_index: np.ndarray) -> np.ndarray:
        pre, post = self.degree_weights()
        history = self.graph.binary[user_index] @ sp.diags(pre)
        # Column layout (n_items x batch) so the sparse products are CSR @ dense.
        y = self.spectral_filter(history.T.toarray())
        if self.ideal_basis is not None:
            y += self.ideal_weight * (self.ideal_basis.T @ self.ideal_projection(history))
        y *= post[:, None]
        return np.ascontiguousarray(y.T)

    def ideal_projection(self, history: sp.csr_matrix) -> np.ndarray:
        """``V^T x`` as (ideal_rank, batch) from the sparse (batch, n_items) histories: a sparse
        product, instead of a dense one over every item."""
        return np.ascontiguousarray((history @ self.ideal_basis.T).T)


class FusionModel(CollaborativeModel):
    """Late score fusion of other families: ``sum_m weight_m * z_m(user)``, where ``z_m`` is
    member ``m``'s score row standardised over the items (zero mean, unit variance), so a
    member's scale does not decide its say (the usual linear ensemble of recommenders; the
    weights are chosen on validation like any hyper-parameter).

    ``weights`` maps a model name of :data:`MODELS` to its weight; ``members`` gives each one's
    keyword arguments (default: the model's defaults). Memory and time: the members' together.
    """

    name = "fusion"

    def __init__(self, weights: dict[str, float] | None = None,
                 members: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.weights = dict(weights or {"chebycf": 1.0, "als": 0.2})
        unknown = set(self.weights) - (set(MODELS) - {self.name})
        if unknown or not self.weights:
            raise ValueError(f"fusion weights name unknown models {sorted(unknown)}; choose from "
                             f"{sorted(set(MODELS) - {self.name})}")
        self.member_params = {name: dict((members or {}).get(name, {})) for name in self.weights}
        self.members = {name: MODELS[name](**self.member_params[name]) for name in self.weights}

    def params(self) -> dict[str, Any]:
        return {"weights": self.weights,
                "members": {name: model.params() for name, model in self.members.items()}}

    def _fit(self, user_items: sp.csr_matrix) -> None:
        for model in self.members.values():
            model.fit(user_items)

    def member_scores(self, user_index: np.ndarray) -> dict[str, np.ndarray]:
        """Each member's scores for ``user_index``, standardised per user."""
        out = {}
        for name, model in self.members.items():
            scores = model.score(user_index)
            scores -= scores.mean(axis=1, keepdims=True)
            scores /= np.maximum(scores.std(axis=1, keepdims=True), 1e-12)
            out[name] = scores
        return out

    def _score(self, user_index: np.ndarray) -> np.ndarray:
        scores = self.member_scores(user_index)
        return combine_terms(np.array([self.weights[name] for name in scores]), scores.values())


def combine_terms(coefficients: np.ndarray, terms: Iterable[np.ndarray]) -> np.ndarray:
    """``sum_k coefficients[k] * terms[k]`` in the terms' dtype (float32 blocks stay float32)."""
    terms = iter(terms)
    out = float(coefficients[0]) * next(terms)
    for coefficient, term in zip(coefficients[1:], terms):
        out += float(coefficient) * term
    return out


def low_pass_response(mu: np.ndarray, flatness: float) -> np.ndarray:
    """ChebyCF's target response on ``P``'s eigenvalues ``mu`` in [0, 1]: 1 at the lowest
    frequency (``mu = 1``), 0 at the highest, 1/2 at ``mu = 1/2``; ``flatness`` shapes the
    slope (1: linear, ``h(mu) = mu``; towards 0: a step)."""
    centred = 2.0 * np.asarray(mu, dtype=np.float64) - 1.0
    return 0.5 + 0.5 * np.sign(centred) * np.abs(centred) ** flatness


def chebyshev_coefficients(target: Callable[[np.ndarray], np.ndarray],
                           order: int) -> np.ndarray:
    """Coefficients ``c_0..c_order`` of the polynomial ``sum_k c_k T_k(x)`` that interpolates
    ``target`` at the ``order + 1`` Chebyshev nodes of [-1, 1] (near-minimax, no Runge
    oscillation)."""
    angles = np.pi * (np.arange(order + 1) + 0.5) / (order + 1)
    values = target(np.cos(angles))
    coefficients = np.array([2.0 / (order + 1) * np.sum(values * np.cos(k * angles))
                             for k in range(order + 1)])
    coefficients[0] /= 2.0
    return coefficients


def _inverse_sqrt(degree: np.ndarray) -> np.ndarray:
    out = np.zeros_like(degree, dtype=np.float64)
    np.divide(1.0, np.sqrt(degree), out=out, where=degree > 0)
    return out


MODELS: dict[str, type[CollaborativeModel]] = {
    model.name: model for model in (ALSModel, BSPMModel, GFCFModel, ChebyCFModel, FusionModel)}
"""Model classes by the name used in benchmarks and configs."""
