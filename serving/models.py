"""The rankers being served: the run the published index names, reloaded when the alias moves.

The items alias of each surface carries its run id in ``_meta``; the ranker file of that run is
loaded from where the model registry keeps it (:func:`hybridrec.registry.ranker_path`). The alias is
re-checked at most every ``serving.model_check_interval_s`` seconds, so a retrain's alias swap reaches
the server without a restart. A served model pins its run's concrete item and user indices, so the
ranker, the candidates and the user documents always come from the same run.

A newly published run is warmed (:attr:`RankerRegistry.prepare`: the item cache filled, each
source's first query paid) in the background while the previous run keeps serving from its own
indices (publish keeps ``retrain.keep_index_versions`` of them), and is switched to once warm: the
first feeds after a publish are not the ones that pay a cold index.

Each published run carries the hash of the config that shaped it (``Settings.model_config_hash``).
A run made under another model config than the server's is still served (it is the run the indices
hold), but the registry says so: a warning in the log, ``/readyz``'s ``config_match`` and the
``hybridrec_model_config_match`` gauge.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hybridrec.config import Settings
from hybridrec.models.ranker import Ranker
from hybridrec.registry import ranker_path
from hybridrec.serving.metrics import ServingMetrics
from hybridrec.serving.store import ServingStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    run_id: str
    ranker: Ranker
    content_dim: int | None
    items_index: str  # the concrete indices the run published: candidates and user documents come from
    users_index: str  # them, never from a newer run's


@dataclass(frozen=True)
class ConfigMatch:
    """The served run's model-config hash against the server's own."""

    run_id: str
    run_hash: str | None  # None: the run was published before runs carried the hash
    server_hash: str

    @property
    def match(self) -> bool:
        return self.run_hash == self.server_hash

    def as_dict(self) -> dict[str, str | bool | None]:
        return {"run_id": self.run_id, "run": self.run_hash, "server": self.server_hash, "match": self.match}


class ModelUnavailable(RuntimeError):
    """No ranker can serve the surface; ``reason`` names the part that failed, for the degraded metric."""

    reason = "model"


class ServedRunUnreadable(ModelUnavailable):
    """No ranker loaded yet because the served index could not be read: OpenSearch is the cause, not a model."""

    reason = "search"


class RankerRegistry:
    def __init__(self, settings: Settings, store: ServingStore, metrics: ServingMetrics | None = None):
        self.settings, self.store, self.metrics = settings, store, metrics
        self.model_config_hash = settings.model_config_hash()
        self._config: dict[str, ConfigMatch] = {}
        self.interval_s = settings.serving.model_check_interval_s
        self._served: dict[str, ServedModel] = {}
        self._loaded: dict[tuple[str, str], Ranker] = {}
        self._checked_at: dict[str, float] = {}
        self._read_errors: dict[str, str] = {}
        self._preparing: dict[str, str] = {}  # surface -> the newly published run being warmed
        self._lock = threading.Lock()
        # Warms a model before it serves (the feed pipeline's ``warm_model``); None switches at once.
        self.prepare: Callable[[str, ServedModel], None] | None = None

    def path(self, run_id: str, surface: str) -> Path:
        return ranker_path(self.settings, run_id, surface)

    def ranker(self, run_id: str, surface: str) -> Ranker:
        """A specific run's ranker (an experiment variant may pin one), loaded once."""
        key = (run_id, surface)
        if key not in self._loaded:
            try:
                self._loaded[key] = Ranker.load(self.path(run_id, surface))
            except (FileNotFoundError, ValueError) as err:
                raise ModelUnavailable(f"{surface} ranker of run {run_id}: {err}") from err
            log.info("loaded %s ranker of run %s", surface, run_id)
        return self._loaded[key]

    def served(self, surface: str, recheck: bool = False) -> ServedModel:
        """The model matching the served index; re-checks the alias when the interval has passed (or at
        once with ``recheck``). If the check fails (OpenSearch down), the model already loaded stays in service."""
        now = time.monotonic()
        if recheck or now - self._checked_at.get(surface, -1e9) >= self.interval_s:
            with self._lock:
                if recheck or now - self._checked_at.get(surface, -1e9) >= self.interval_s:
                    self._checked_at[surface] = now
                    self._refresh(surface)
        if surface not in self._served:
            if surface in self._read_errors:
                raise ServedRunUnreadable(f"no {surface} model loaded: the served index could not be read "
                                          f"({self._read_errors[surface]})")
            raise ModelUnavailable(f"no {surface} model loaded (the served run's ranker could not be loaded)")
        return self._served[surface]

    def _refresh(self, surface: str) -> None:
        try:
            index, run_id, content_dim, run_hash = self.store.served_run(surface)
        except Exception as err:  # noqa: BLE001 - OpenSearch down or not published: keep what we have
            self._read_errors[surface] = str(err)
            log.warning("cannot read the served %s run (%s); keeping the loaded model", surface, err)
            return
        self._read_errors.pop(surface, None)
        current = self._served.get(surface)
        if (current is not None and current.run_id == run_id) or self._preparing.get(surface) == run_id:
            return
        try:
            model = ServedModel(run_id, self.ranker(run_id, surface), content_dim, index,
                                self.store.run_users_index(surface, run_id))
        except ModelUnavailable as err:
            log.error("cannot serve run %s: %s; keeping the loaded model", run_id, err)
            return
        config = ConfigMatch(run_id, run_hash, self.model_config_hash)
        if current is None or self.prepare is None:  # nothing served yet: the start-up warm-up waits for it
            self._switch(surface, model, config)
            return
        self._preparing[surface] = run_id
        log.info("warming %s run %s in the background; run %s serves meanwhile", surface, run_id, current.run_id)
        threading.Thread(target=self._prepare_then_switch, args=(surface, model, config),
                         name=f"prepare-{surface}-{run_id}", daemon=True).start()

    def _prepare_then_switch(self, surface: str, model: ServedModel, config: ConfigMatch) -> None:
        start = time.perf_counter()
        try:
            self.prepare(surface, model)
            log.info("%s run %s warm in %.1f s", surface, model.run_id, time.perf_counter() - start)
        except Exception as err:  # noqa: BLE001 - warming is an optimisation: serve the new run cold
            log.warning("warming %s run %s failed (%s); serving it cold", surface, model.run_id, err)
        with self._lock:
            if self._preparing.get(surface) != model.run_id:
                return  # a newer run was published meanwhile and is being warmed instead
            del self._preparing[surface]
            self._switch(surface, model, config)

    def _switch(self, surface: str, model: ServedModel, config: ConfigMatch) -> None:
        previous = self._served.get(surface)
        self._served[surface] = model
        log.info("serving %s run %s (was %s)", surface, model.run_id, previous.run_id if previous else "none")
        self._note_config(surface, config)

    def _note_config(self, surface: str, config: ConfigMatch) -> None:
        self._config[surface] = config
        if not config.match:
            log.warning("the %s run %s was made under model config %s, this server's is %s: serving it anyway; "
                        "retrain under this config or serve with the run's", surface, config.run_id,
                        config.run_hash or "unknown", config.server_hash)
        if self.metrics is not None:
            self.metrics.model_config_match.labels(surface).set(1 if config.match else 0)

    def config_match(self) -> dict[str, dict[str, str | bool | None] | None]:
        """Per surface, the served run's model-config hash against the server's (None: no run loaded)."""
        return {s: (self._config[s].as_dict() if s in self._config else None) for s in ("place", "clip")}

    def ready(self) -> dict[str, str | None]:
        return {s: (self._served[s].run_id if s in self._served else None) for s in ("place", "clip")}
