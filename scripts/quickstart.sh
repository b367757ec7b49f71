#!/usr/bin/env bash
# Quick start, command 1: set up, start the services, build the data and run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/hybridrec quickstart "$@"
