#!/usr/bin/env bash
# Run the test suite (after `bash scripts/setup.sh`): lint, then pytest.
#   bash scripts/test.sh           everything (the README's command, and CI's)
#   bash scripts/test.sh --fast    the fast tier for the edit loop: every test not marked slow
#                                  (each module's logic, few model runs); the rest needs the full run
# Other arguments go to pytest. Tests read MBPP and the other shared data from $LOCALDISTILL_DATA
# (default: ../shared/data).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
if [ ! -x .venv/bin/python ]; then
  echo "test.sh: no .venv here; run 'bash scripts/setup.sh' first" >&2
  exit 2
fi
export LOCALDISTILL_DATA="${LOCALDISTILL_DATA:-$repo/../shared/data}"
args=()
for arg in "$@"; do
  if [ "$arg" = "--fast" ]; then args+=(-m "not slow"); else args+=("$arg"); fi
done
.venv/bin/ruff check localdistill tests scripts
exec .venv/bin/python -m pytest --durations=15 ${args[@]+"${args[@]}"}
