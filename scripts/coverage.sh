#!/usr/bin/env bash
# Line coverage of localdistill/ over the test suite (after `bash scripts/setup.sh`), subprocesses
# included (the CLI tests, torchrun's workers): `bash scripts/coverage.sh [pytest args]`.
# Prints the per-file table and the total; the data stays in .coverage for `coverage html`.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
if [ ! -x .venv/bin/python ]; then
  echo "coverage.sh: no .venv here; run 'bash scripts/setup.sh' first" >&2
  exit 2
fi
export LOCALDISTILL_DATA="${LOCALDISTILL_DATA:-$repo/../shared/data}"
export COVERAGE_FILE="$repo/.coverage"  # absolute: subprocesses run in other directories
rm -f "$repo"/.coverage "$repo"/.coverage.*
status=0
.venv/bin/python -m coverage run -m pytest "$@" || status=$?
.venv/bin/python -m coverage combine -q
.venv/bin/python -m coverage report
exit "$status"
