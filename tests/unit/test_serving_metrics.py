"""/metrics in multiprocess mode: whichever process renders it, the counts are every process's."""

import os
import subprocess
import sys

from hybridrec.serving.metrics import MULTIPROCESS_DIR_ENV, ServingMetrics

WORKER = """
import os, sys
from hybridrec.serving.metrics import ServingMetrics
m = ServingMetrics()
for _ in range(int(sys.argv[1])):
    m.responses.labels("/v1/feed/{user_id}", "200").inc()
    m.worker_responses.inc()
if len(sys.argv) > 2:
    sys.stdout.write(m.exposition().decode())
"""


def _worker(env: dict, *args: str) -> str:
    return subprocess.run([sys.executable, "-c", WORKER, *args], env=env, check=True, capture_output=True,
                          text=True).stdout


def test_one_scrape_sums_every_worker_and_labels_each_worker_by_pid(tmp_path):
    env = {**os.environ, MULTIPROCESS_DIR_ENV: str(tmp_path)}
    _worker(env, "3")
    _worker(env, "4")
    text = _worker(env, "5", "scrape")
    assert 'hybridrec_responses_total{route="/v1/feed/{user_id}",status="200"} 12.0' in text
    per_worker = [line for line in text.splitlines() if line.startswith("hybridrec_worker_responses{pid=")]
    assert sorted(float(line.rsplit(" ", 1)[1]) for line in per_worker) == [3.0, 4.0, 5.0]


def test_a_single_process_renders_its_own_registry(monkeypatch):
    monkeypatch.delenv(MULTIPROCESS_DIR_ENV, raising=False)
    first, second = ServingMetrics(), ServingMetrics()
    first.errors.labels("/v1/feed/{user_id}").inc()
    assert b'hybridrec_errors_total{route="/v1/feed/{user_id}"} 1.0' in first.exposition()
    assert b"hybridrec_errors_total{" not in second.exposition()
