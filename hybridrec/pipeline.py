"""Jobs as named steps: each step is logged, timed and re-runnable on its own.

Steps share a context dict: a step reads what earlier steps produced and returns what it adds.
A step must be idempotent (re-running it replaces its outputs), so a failed job is re-run
from the top without cleaning up by hand.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

StepFn = Callable[[dict[str, Any]], dict[str, Any] | None]


@dataclass(frozen=True)
class Step:
    name: str
    run: StepFn
    doc: str = ""


class StepFailed(RuntimeError):
    def __init__(self, step: str, cause: BaseException):
        super().__init__(f"step '{step}' failed: {cause}")
        self.step = step


def run_steps(job: str, steps: Sequence[Step], context: dict[str, Any]) -> dict[str, Any]:
    """Run ``steps`` in order; the context gains each step's outputs and a ``timings`` entry."""
    timings = context.setdefault("timings", {})
    for index, step in enumerate(steps, start=1):
        log.info("[%s %d/%d] %s: %s", job, index, len(steps), step.name, step.doc)
        started = time.perf_counter()
        try:
            produced = step.run(context) or {}
        except Exception as err:
            log.error("[%s] step %s failed after %.1fs: %s", job, step.name, time.perf_counter() - started, err)
            raise StepFailed(step.name, err) from err
        timings[step.name] = round(time.perf_counter() - started, 2)
        context.update(produced)
        log.info("[%s] %s done in %.1fs", job, step.name, timings[step.name])
    return context
