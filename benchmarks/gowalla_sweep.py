"""Tune ChebyCF on the Gowalla validation split (never the test split) with one pass per setting
of ``degree_power``: the Chebyshev terms ``T_k(L) x`` and the ideal-filter projections of each
user batch are computed once, and every (order, flatness, ideal_rank, ideal_weight) combination
is a weighted sum of them, so a grid costs little more than its largest member.

    python benchmarks/gowalla_sweep.py --users 8000 --orders 6 8 10 --flatness 1 1.5 2 \\
        --ideal-ranks 256 512 --ideal-weights 0.1 0.2 --degree-powers 0.3 0.4 --output sweep.json

``--fuse-with als`` instead sweeps the weights of other families fused with the configured
ChebyCF (:class:`FusionModel`). Prints one line per combination, best last; the chosen setting goes into the ``gowalla.chebycf``
section of the config, and `hybridrec bench gowalla` then scores validation and test once.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from hybridrec.bench.gowalla import load_gowalla
from hybridrec.config import load_settings
from hybridrec.models.collaborative import (
    ChebyCFModel,
    FusionModel,
    chebyshev_coefficients,
    combine_terms,
    low_pass_response,
)
from hybridrec.models.evaluation import holdout_split, recall_ndcg_sums

log = logging.getLogger("hybridrec.bench.gowalla_sweep")


def sweep(data_dir: Path, orders: list[int], flatness: list[float], ideal_ranks: list[int],
          ideal_weights: list[float], degree_powers: list[float], users: int, seed: int,
          batch_size: int) -> list[dict]:
    cfg = load_settings().gowalla
    train, _ = load_gowalla(data_dir)
    fit, valid = holdout_split(train, cfg.validation_share, cfg.validation_seed)
    candidates = _sample_users(valid, users, seed)
    max_order, max_rank = max(orders), max(ideal_ranks)
    model = ChebyCFModel(order=max_order, ideal_rank=max_rank, ideal_weight=1.0).fit(fit)
    coefficients = {(order, phi): chebyshev_coefficients(
        lambda x, phi=phi: low_pass_response((1.0 - x) / 2.0, phi), order)
        for order, phi in itertools.product(orders, flatness)}
    grid = list(itertools.product(orders, flatness, ideal_ranks, ideal_weights))
    results = []
    for power in degree_powers:
        model.degree_power = power
        pre, post = model.degree_weights()
        sums = {combo: np.zeros(2) for combo in grid}
        start = time.perf_counter()
        for first in range(0, len(candidates), batch_size):
            batch = candidates[first:first + batch_size]
            history = model.graph.binary[batch] @ sp.diags(pre)
            terms = list(model.chebyshev_terms(history.T.toarray(), max_order))
            projection = model.ideal_projection(history)
            ideal = {rank: model.ideal_basis[:rank].T @ projection[:rank] for rank in ideal_ranks}
            for order, phi in itertools.product(orders, flatness):
                filtered = combine_terms(coefficients[order, phi], terms)
                for rank, alpha in itertools.product(ideal_ranks, ideal_weights):
                    scores = ((filtered + alpha * ideal[rank]) * post[:, None]).T
                    sums[order, phi, rank, alpha] += recall_ndcg_sums(
                        np.ascontiguousarray(scores), fit[batch], valid[batch], cfg.k)
            log.info("degree_power %.2f: %d/%d users, %.0fs", power, first + len(batch),
                     len(candidates), time.perf_counter() - start)
        for (order, phi, rank, alpha), (recall, ndcg) in sums.items():
            results.append({"order": order, "flatness": phi, "ideal_rank": rank,
                            "ideal_weight": alpha, "degree_power": power,
                            f"recall@{cfg.k}": round(recall / len(candidates), 5),
                            f"ndcg@{cfg.k}": round(ndcg / len(candidates), 5)})
    results.sort(key=lambda r: r[f"ndcg@{cfg.k}"])
    return results


def sweep_fusion(data_dir: Path, partners: list[str], weights: list[float], users: int,
                 seed: int, batch_size: int) -> list[dict]:
    """ChebyCF (its configured settings) fused with each weight combination of ``partners``
    (their configured settings); members are fitted and scored once per batch."""
    cfg = load_settings().gowalla
    train, _ = load_gowalla(data_dir)
    fit, valid = holdout_split(train, cfg.validation_share, cfg.validation_seed)
    candidates = _sample_users(valid, users, seed)
    members = ["chebycf", *partners]
    model = FusionModel(weights=dict.fromkeys(members, 1.0),
                        members={name: cfg.model_params(name) for name in members}).fit(fit)
    grid = list(itertools.product(weights, repeat=len(partners)))
    sums = {combo: np.zeros(2) for combo in grid}
    start = time.perf_counter()
    for first in range(0, len(candidates), batch_size):
        batch = candidates[first:first + batch_size]
        scores = model.member_scores(batch)
        for combo in grid:
            fused = combine_terms(np.array([1.0, *combo]), [scores[name] for name in members])
            sums[combo] += recall_ndcg_sums(fused, fit[batch], valid[batch], cfg.k)
        log.info("fusion: %d/%d users, %.0fs", first + len(batch), len(candidates),
                 time.perf_counter() - start)
    results = [{"weights": {"chebycf": 1.0, **dict(zip(partners, combo))},
                f"recall@{cfg.k}": round(recall / len(candidates), 5),
                f"ndcg@{cfg.k}": round(ndcg / len(candidates), 5)}
               for combo, (recall, ndcg) in sums.items()]
    return sorted(results, key=lambda r: r[f"ndcg@{cfg.k}"])


def _sample_users(valid, users: int, seed: int) -> np.ndarray:
    """Validation users with held-out items, all or a seeded sample of ``users``."""
    candidates = np.flatnonzero(np.diff(valid.indptr))
    if users and users < len(candidates):
        candidates = np.sort(np.random.default_rng(seed).choice(candidates, users, replace=False))
    return candidates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="default: the config's gowalla.path")
    parser.add_argument("--orders", type=int, nargs="+", default=[8])
    parser.add_argument("--flatness", type=float, nargs="+", default=[1.5])
    parser.add_argument("--ideal-ranks", type=int, nargs="+", default=[512])
    parser.add_argument("--ideal-weights", type=float, nargs="+", default=[0.2])
    parser.add_argument("--degree-powers", type=float, nargs="+", default=[0.4])
    parser.add_argument("--fuse-with", nargs="+", default=[], metavar="MODEL",
                        help="instead of the ChebyCF grid: fuse configured ChebyCF with these models")
    parser.add_argument("--fusion-weights", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    parser.add_argument("--users", type=int, default=0, help="validation users sampled (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if min(args.orders) < 1:
        parser.error("--orders must be >= 1")
    data_dir = args.data_dir or load_settings().gowalla.data_dir
    if args.fuse_with:
        results = sweep_fusion(data_dir, args.fuse_with, args.fusion_weights, args.users,
                               args.seed, args.batch_size)
    else:
        results = sweep(data_dir, args.orders, args.flatness, args.ideal_ranks,
                        args.ideal_weights, args.degree_powers, args.users, args.seed,
                        args.batch_size)
    for row in results:
        print(json.dumps(row))
    if args.output:
        args.output.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
