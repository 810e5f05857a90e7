#!/usr/bin/env bash
# Run the whole test suite (after `bash scripts/setup.sh`): lint, then pytest.
# Tests read MBPP and the other shared data from $LOCALDISTILL_DATA (default: ../shared/data).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
if [ ! -x .venv/bin/python ]; then
  echo "test.sh: no .venv here; run 'bash scripts/setup.sh' first" >&2
  exit 2
fi
export LOCALDISTILL_DATA="${LOCALDISTILL_DATA:-$repo/../shared/data}"
.venv/bin/ruff check localdistill tests scripts
exec .venv/bin/python -m pytest "$@"
