#!/usr/bin/env bash
# Quick start, command 2: set up and run every test. Integration tests start the real services
# once per session (and stop them afterwards only if they were not already running); the cluster
# topology's modules (marker `cluster`, select them with `-m cluster`) bring up and stop their own.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
