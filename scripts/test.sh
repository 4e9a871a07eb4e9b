#!/usr/bin/env bash
# Run the whole suite. Tests that need a service start and stop it themselves (fixtures),
# so nothing is left running. CI=true makes a missing tool a failure, never a skip.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
"$VENV/bin/ruff" check src tests benchmarks || exit 1
"$VENV/bin/mypy" || exit 1
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "test: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
