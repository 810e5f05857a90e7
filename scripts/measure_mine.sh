#!/usr/bin/env bash
# Measure `localdistill mine` on real packages no one here wrote (docs/mine.md, "On a real code
# base"): pygments, more_itertools (setuptools' vendored copy) and click, copied from this
# environment (to $TMPDIR), each mined with the demo teacher (every candidate, --held-out 0).
#   bash scripts/measure_mine.sh [RUNS]      default RUNS: runs/mine-measure/now
# Each package's run is RUNS/<name> (resumed when it exists: the teacher's answers are in its
# cache, so a rerun asks nothing again; a new one starts from the answers kept in
# docs/results/answers/mine/, so on a new machine it takes minutes); its tasks are
# RUNS/<name>.jsonl. The table at the end
# reads only those files. About an hour of teacher time on 2 cores without kept answers.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
runs=${1:-runs/mine-measure/now}
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export LOCALDISTILL_DATA="${LOCALDISTILL_DATA:-$repo/../shared/data}"
# the copies live outside this git work tree: mine reads what git would track, and runs/ is ignored
pkgs=${TMPDIR:-/tmp}/localdistill-mine-pkgs
mkdir -p "$pkgs" "$runs"
for pair in pygments:pygments more_itertools:setuptools/_vendor/more_itertools click:click; do
  name=${pair%%:*}
  if [ ! -d "$pkgs/$name" ]; then
    cp -r "$site/${pair#*:}" "$pkgs/$name"
    find "$pkgs/$name" -name __pycache__ -prune -exec rm -rf {} +
  fi
  kept=docs/results/answers/mine/$name/cache  # the teacher's answers of the measured run
  if [ ! -d "$runs/$name" ] && [ -d "$kept" ]; then
    mkdir -p "$runs/$name" && cp -r "$kept" "$runs/$name/cache"
  fi
  echo "== $name $(date -u +%T)"
  .venv/bin/localdistill mine "$pkgs/$name" -o "$runs/$name.jsonl" --teacher demo-teacher \
    --run "$runs/$name" --held-out 0 > "$runs/$name.log" 2>&1 || {
      echo "mine $name failed: see $runs/$name.log" >&2; exit 1; }
done
.venv/bin/python - "$runs" <<'PY'
import json, sys
from pathlib import Path

from localdistill.stages.gentests import defined_classes
from localdistill.tasks import load_jsonl

runs = Path(sys.argv[1])
print("| package | candidates (methods) | tasks with 3+ tests | of them: methods / lazy outputs "
      "/ taking objects of the package | tests | tests per task (median) | behaviours per task "
      "(median) | tasks whose tests all behave alike | asked again |")
print("|---|---|---|---|---|---|---|---|---|")
for name in ("pygments", "more_itertools", "click"):
    stages = json.loads((runs / name / "manifest.json").read_text())["stages"]
    mined, made = stages["mine"]["counts"], stages["gen-tests"]["counts"]
    fates = [json.loads(x) for x in (runs / name / "mine.jsonl").read_text().splitlines()]
    methods = sum(f["fate"] != "rejected" and "." in f["key"].split("::")[-1] for f in fates)
    tasks = load_jsonl(runs / f"{name}.jsonl") if (runs / f"{name}.jsonl").exists() else []
    own = sum("method" in t.metadata for t in tasks)
    lazy = sum(any(s.startswith("assert list(") for s in t.tests) for t in tasks)
    objects = sum(any(f"{c}(" in s for s in t.tests
                      for c in defined_classes(t) - {t.entry_point}) for t in tasks)
    print(f"| {name} | {mined['candidates']} ({methods}) | {made.get('tasks with tests', 0)} | "
          f"{own} / {lazy} / {objects} | {made.get('tests kept', 0)} | "
          f"{made.get('tests per task (median)', '-')} | "
          f"{made.get('behaviours per task (median)', '-')} | "
          f"{made.get('tasks whose tests all behave alike', '-')} | "
          f"{made.get('tasks asked again (first calls alike or too few)', made.get('tasks asked again (first calls alike)', 0))} |")
PY
