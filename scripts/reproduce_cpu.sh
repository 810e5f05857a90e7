#!/usr/bin/env bash
# Does personalised distillation work with local models? The whole loop, once per student:
#
#   bash scripts/reproduce_cpu.sh DATA_DIR [demo|tiny ...] [-- options for `localdistill run`]
#
# DATA_DIR holds mbpp.jsonl (../shared/data on the project's machines). Students: demo
# (Qwen2.5-Coder-0.5B-Instruct) and tiny (SmolLM2-135M-Instruct), both taught by the demo
# teacher (Qwen2.5-Coder-1.5B-Instruct); default: demo, then tiny. The configuration is
# examples/reproduce_cpu.toml; each run goes to $RUNS/reproduce-<student> (RUNS default: runs).
# It takes many hours on a 2-core CPU: run it in the background and run the same command again
# after any interruption; it picks up where it stopped. Options after `--` go to every
# `localdistill run`, e.g. `-- --reuse runs` to take answers earlier runs already have.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ $# -lt 1 ] || [ ! -f "$1/mbpp.jsonl" ]; then
  echo "usage: reproduce_cpu.sh DATA_DIR [demo|tiny ...] [-- run options]" \
       "(DATA_DIR must hold mbpp.jsonl)" >&2
  exit 2
fi
export LOCALDISTILL_DATA=$(cd "$1" && pwd)
shift
students=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  case "$1" in
    demo) students+=(demo-student) ;;
    tiny) students+=(tiny) ;;
    *) echo "reproduce_cpu.sh: unknown student '$1' (expected demo or tiny)" >&2; exit 2 ;;
  esac
  shift
done
[ $# -gt 0 ] && shift  # the --
[ ${#students[@]} -gt 0 ] || students=(demo-student tiny)
runs=${RUNS:-runs}
localdistill=${LOCALDISTILL:-$repo/.venv/bin/localdistill}
mkdir -p "$runs"
for student in "${students[@]}"; do
  name=reproduce-${student%-student}
  config="$runs/$name.toml"
  sed "s/^student = .*/student = \"$student\"/" "$repo/examples/reproduce_cpu.toml" > "$config"
  echo "== $name: $(date -u +%FT%TZ)"
  start=$(date +%s)
  "$localdistill" run "$config" --run "$runs/$name" "$@"
  echo "== $name: finished in $(( ($(date +%s) - start) / 60 )) min of this invocation"
done
