#!/usr/bin/env bash
# Quick start, command 2: set up and run every test. Integration tests start the real services
# once per session (and stop them afterwards only if they were not already running).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The cluster modules (-m cluster) are quarantined: in CI the topology replay and the standalone-Spark
# catalog connection failed intermittently; run them with `bash scripts/test.sh -m cluster`.
exec .venv/bin/python -m pytest -m "not cluster" "$@"
