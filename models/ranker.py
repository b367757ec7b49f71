"""The fusion ranker: LightGBM lambdarank over the ranking features, one model per surface."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from hybridrec.config import RankerSettings
from hybridrec.features.ranking import FEATURE_NAMES

log = logging.getLogger(__name__)


class Ranker:
    """Scores candidate rows; trained on groups of candidates per user with graded engagement labels."""

    def __init__(self, booster: lgb.Booster):
        if list(booster.feature_name()) != list(FEATURE_NAMES):
            raise ValueError(f"ranker was trained on features {booster.feature_name()}, "
                             f"this code computes {list(FEATURE_NAMES)}: retrain or deploy matching code")
        self.booster = booster

    @classmethod
    def train(cls, features: pd.DataFrame, labels: np.ndarray, groups: np.ndarray, cfg: RankerSettings,
              valid: tuple[pd.DataFrame, np.ndarray, np.ndarray] | None = None, seed: int = 0) -> "Ranker":
        """``groups``: rows per user, in row order (rows of one user contiguous)."""
        params = {
            "objective": "lambdarank", "metric": "ndcg", "eval_at": [20], "num_leaves": cfg.num_leaves,
            "learning_rate": cfg.learning_rate, "min_child_samples": cfg.min_child_samples,
            "feature_pre_filter": False, "num_threads": 2, "seed": seed, "verbosity": -1,
        }
        train_set = lgb.Dataset(features[list(FEATURE_NAMES)], labels, group=groups)
        callbacks = [lgb.log_evaluation(period=0)]
        valid_sets = []
        if valid is not None:
            valid_sets = [lgb.Dataset(valid[0][list(FEATURE_NAMES)], valid[1], group=valid[2], reference=train_set)]
            callbacks.append(lgb.early_stopping(cfg.early_stopping_rounds, verbose=False))
        booster = lgb.train(params, train_set, num_boost_round=cfg.n_estimators, valid_sets=valid_sets,
                            callbacks=callbacks)
        log.info("ranker: %d trees on %d rows, %d users", booster.num_trees(), len(labels), len(groups))
        return cls(booster)

    def validation(self) -> tuple[float, int]:
        """NDCG@20 on the validation rows it was trained with, at the trees early stopping kept, and that number."""
        if not self.booster.best_score:
            raise ValueError("the ranker was trained without validation rows")
        return float(self.booster.best_score["valid_0"]["ndcg@20"]), self.booster.best_iteration or self.booster.num_trees()

    def score(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Scores of a frame with the :data:`FEATURE_NAMES` columns, or of a matrix with them in order
        (serving's path: LightGBM's pandas conversion cost more than the prediction)."""
        if isinstance(features, pd.DataFrame):
            features = features[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
        return self.booster.predict(features, num_threads=1)

    def importance(self) -> dict[str, float]:
        gains = self.booster.feature_importance(importance_type="gain")
        return {name: float(g) for name, g in sorted(zip(FEATURE_NAMES, gains), key=lambda p: -p[1])}

    def save(self, path: Path, stamp: dict[str, str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(path))
        path.with_suffix(".json").write_text(json.dumps({**stamp, "importance": self.importance()}, indent=2))

    @classmethod
    def load(cls, path: Path) -> "Ranker":
        if not path.exists():
            raise FileNotFoundError(f"ranker model not found: {path}")
        return cls(lgb.Booster(model_file=str(path)))
