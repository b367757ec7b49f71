"""Run ids and the stamp every artefact carries, so any output can be traced to the run and
config that produced it (and stale outputs can be detected instead of served)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone

from hybridrec.config import Settings

MODEL_CONFIG_HASH = "hybridrec.model-config-hash"
"""Stamp key of the model-config hash: in index ``_meta`` serving compares it with its own."""


@dataclass(frozen=True)
class RunContext:
    job: str
    run_id: str
    config_hash: str
    model_config_hash: str = ""  # of the settings that shape a model (Settings.model_config_hash)
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def stamp(self) -> dict[str, str]:
        """Properties written into Iceberg snapshot summaries, index metadata and model files."""
        return {
            "hybridrec.job": self.job,
            "hybridrec.run-id": self.run_id,
            "hybridrec.config-hash": self.config_hash,
            MODEL_CONFIG_HASH: self.model_config_hash,
        }


def new_run(settings: Settings, job: str) -> RunContext:
    now = datetime.now(timezone.utc)
    run_id = f"{job}-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    return RunContext(job=job, run_id=run_id, config_hash=settings.config_hash(),
                      model_config_hash=settings.model_config_hash(), started_at=now)
