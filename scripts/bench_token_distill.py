"""Benchmark: what token-level distillation costs against plain SFT on the same failures.

    .venv/bin/python scripts/bench_token_distill.py --run runs/reproduce-k4/collect \
        --tasks mbpp:train,mbpp:validation --student demo-student --teacher demo-teacher
    .venv/bin/python scripts/bench_token_distill.py --run RUN --tasks SPEC --student tiny \
        --teacher tiny --n 4 --steps 2

Takes the first N verified refinements of a collect run (copied into a temporary run: the kept
run is only read) and measures, in one invocation:

- scoring: the teacher reading each failed attempt with privileged context (stages/score.py,
  top-k 20 as `score` and `collect` do): teacher tokens/s on this machine, and the bytes stored
  per scored answer token (the JSONL rows and the datasets directory);
- training, each in its own process (so each peak memory is its own): the same number of
  optimiser steps on the scored rows (the distillation loss, forward KL) and on the PERsD rows of
  the same attempts (cross-entropy on the refinements), tokens/s and peak memory side by side,
  and their ratio.

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, sys
from localdistill.stages.train import TrainConfig, train
rows, student, out, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
config = TrainConfig(max_steps=steps, grad_accumulation=4, batch_size=1, save_every=10**6,
                     distill="forward")
report = train(rows, student, out, config, restart=True).report
counts = report.counts
print(json.dumps({"tokens_per_s": float(str(counts["tokens/s"]).replace(",", "")),
                  "peak_gib": float(counts["peak memory (GiB)"]),
                  "first_loss": counts["first loss"], "last_loss": counts["last loss"],
                  "seconds": report.seconds}))
"""


def subset(source: Path, target: Path, n: int) -> list[str]:
    """The first `n` verified refinements of `source` with their attempts and executions, as a
    new run in `target`; their attempt keys."""
    from localdistill.rundir import RunDir, read_records

    refinements, seen = [], set()
    for r in read_records(source / "refinements.jsonl"):
        if r.get("passed") and r["attempt_key"] not in seen and len(refinements) < n:
            refinements.append(r)
            seen.add(r["attempt_key"])
    if not refinements:
        raise SystemExit(f"{source}: no verified refinement")
    with RunDir(target) as run:
        run.write("refinements", refinements)
        for name in ("attempts", "executions"):
            run.write(name, [r for r in read_records(source / f"{name}.jsonl")
                             if r.get("key") in seen])
    return sorted(seen)


def train_child(rows: Path, student: str, out: Path, steps: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(rows), student, str(out), str(steps)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"training on {rows.name} failed: "
                         f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() \
        else path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a collect run (only read)")
    parser.add_argument("--tasks", required=True, help="its task set (as collect was given)")
    parser.add_argument("--student", default="demo-student")
    parser.add_argument("--teacher", default="demo-teacher")
    parser.add_argument("--n", type=int, default=12, help="failed attempts to score and train on")
    parser.add_argument("--steps", type=int, default=3, help="optimiser steps of 4 examples")
    args = parser.parse_args()

    from localdistill.rundir import RunDir
    from localdistill.stages.build import build
    from localdistill.stages.score import score_refinements
    from localdistill.tasks import load_tasks

    tasks = load_tasks(args.tasks)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        keys = subset(args.run, tmp / "run", args.n)
        with RunDir(tmp / "run") as run:
            started = time.monotonic()
            report = score_refinements(tasks, run, args.student, args.teacher, tmp / "scores")
            scoring_seconds = time.monotonic() - started
            build(tasks, run, ("persd",))
        scored = [json.loads(x) for x in (tmp / "scores.jsonl").open()]
        answer_tokens = sum(len(r["rest"]) for r in scored)
        sft = tmp / "run" / "data" / "persd.jsonl"
        distill = train_child(tmp / "scores.jsonl", args.student, tmp / "t-distill", args.steps)
        plain = train_child(sft, args.student, tmp / "t-sft", args.steps)
        print(f"{len(keys)} failed attempts of {args.run}, student {args.student}, teacher "
              f"{args.teacher}, {os.cpu_count()} cores")
        print(f"scoring: {report.teacher_tokens:,} teacher tokens in {scoring_seconds:.0f} s "
              f"({report.teacher_tokens / scoring_seconds:.0f} tok/s, model loading included), "
              f"{answer_tokens:,} answer tokens scored at top-k 20")
        print(f"stored per answer token: JSONL {size(tmp / 'scores.jsonl') / answer_tokens:.0f} "
              f"bytes, datasets directory {size(tmp / 'scores') / answer_tokens:.0f} bytes")
        for name, r in (("distillation (forward KL)", distill), ("SFT on the refinements", plain)):
            print(f"{name:26s} {r['tokens_per_s']:7.0f} tok/s   peak {r['peak_gib']:.2f} GiB   "
                  f"loss {r['first_loss']} -> {r['last_loss']}   {r['seconds']:.0f} s")
        print(f"distillation / SFT: speed {distill['tokens_per_s'] / plain['tokens_per_s']:.2f}x, "
              f"peak memory {distill['peak_gib'] / plain['peak_gib']:.2f}x")


if __name__ == "__main__":
    main()
