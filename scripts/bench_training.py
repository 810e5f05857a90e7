"""Benchmark: LoRA training speed and peak memory of a student, with a forward-only baseline.

    .venv/bin/python scripts/bench_training.py                      # the demo student, PEFT
    .venv/bin/python scripts/bench_training.py --student tiny --steps 4
    .venv/bin/python scripts/bench_training.py --backend unsloth    # on a CUDA GPU with unsloth
    .venv/bin/python scripts/bench_training.py --student tiny --processes 1,2 --baseline HEAD~1

`--processes 1,2` trains the same steps on 1 and on 2 data-parallel processes (accelerate; gloo
on a CPU) and prints their tokens/s side by side with each process's peak memory (on 2 cores,
expect no gain: the point of several processes is several GPUs). `--baseline REV` also trains on
one process with the code of git revision REV (a worktree of this repository), alternating with
the current code, and prints the ratio: is the one-process path as fast as it was?

A fixed data set (24 small code examples, the same every run) and a fixed number of optimiser
steps. Each backend trains in its own process (so each peak memory is its own); the baseline is
the same examples through the same model forward only, without gradients, in that process: the
ratio says what training costs over inference on this machine. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
from pathlib import Path
import torch
from localdistill.stages.train import TrainConfig, train, data
from localdistill.stages.train import peft_backend
rows, student, out, backend = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5]
steps = int(sys.argv[4])
config = TrainConfig(max_steps=steps, grad_accumulation=4, batch_size=1, backend=backend,
                     save_every=10**6)
result = train(rows, student, out, config, restart=True)
counts = result.report.counts
# Baseline: the same examples forward only, no gradients, same model and numerics.
from localdistill.models import get_model, weights_path
model, tokenizer = peft_backend.load(weights_path(get_model(student)), config)
examples, _ = data.tokenize(data.load_rows(rows), tokenizer, config.max_length)
device = next(model.parameters()).device
used = examples[: steps * config.grad_accumulation]
started, tokens = time.monotonic(), 0
with torch.no_grad():
    for e in used:
        ids = torch.tensor([e.input_ids], device=device)
        model(input_ids=ids)
        tokens += ids.numel()
forward = tokens / (time.monotonic() - started)
print(json.dumps({"train_tokens_per_s": float(counts["tokens/s"].replace(",", "")),
                  "forward_tokens_per_s": forward,
                  "peak_gib": float(counts["peak memory (GiB)"]),
                  "steps": counts["optimiser steps"], "first_loss": counts["first loss"],
                  "last_loss": counts["last loss"], "seconds": result.report.seconds}))
"""


def examples() -> list[dict]:
    rows = []
    for i in range(24):
        body = "\n".join(f"    total += {j} * x" for j in range(i % 6 + 2))
        rows.append({
            "prompt": f"Write a Python function `f{i}(x)` that returns a weighted sum of x.",
            "completion": f"```python\ndef f{i}(x):\n    total = 0\n{body}\n    return total\n```"})
    return rows


PROCESSES_CHILD = """
import json, sys
from localdistill.stages.train import TrainConfig, train
rows, student, out, steps, processes = sys.argv[1:6]
more = {"processes": int(processes)} if processes != "1" else {}  # older code has no such field
config = TrainConfig(max_steps=int(steps), grad_accumulation=4, batch_size=1, backend="peft",
                     save_every=10**6, **more)
counts = train(rows, student, out, config, restart=True).report.counts
peaks = counts.get("peak memory per process (GiB)", counts["peak memory (GiB)"])
print(json.dumps({"tokens_per_s": float(counts["tokens/s"].replace(",", "")), "peaks": peaks,
                  "last_loss": counts["last loss"]}))
"""


def _one(rows: Path, student: str, out: Path, steps: int, processes: int,
         code: Path | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code)) if code else None
    done = subprocess.run([sys.executable, "-c", PROCESSES_CHILD, str(rows), student, str(out),
                           str(steps), str(processes)], capture_output=True, text=True, env=env,
                          cwd=code or None)
    if done.returncode != 0:
        raise SystemExit(f"{processes} process(es): failed: "
                         f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare_processes(args, rows: Path, tmp: Path) -> None:
    counts = [int(n) for n in args.processes.split(",")]
    results = {n: _one(rows, args.student, tmp / f"p{n}", args.steps, n) for n in counts}
    print(f"student {args.student}, {args.steps} optimiser steps of 4 examples, "
          f"{os.cpu_count()} cores")
    base = results[counts[0]]["tokens_per_s"]
    for n, r in results.items():
        print(f"{n} process(es): {r['tokens_per_s']:8.0f} tok/s  ({r['tokens_per_s'] / base:.2f}x "
              f"of {counts[0]})   peak memory per process {r['peaks']} GiB   last loss "
              f"{r['last_loss']}")
    if args.baseline:
        worktree = tmp / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.baseline],
                       check=True, capture_output=True, cwd=Path(__file__).resolve().parents[1])
        try:
            now, then = [], []
            for round_ in range(args.rounds):  # alternated, so drift hits both alike
                now.append(_one(rows, args.student, tmp / f"now{round_}", args.steps, 1))
                then.append(_one(rows, args.student, tmp / f"then{round_}", args.steps, 1,
                                 worktree))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)],
                           capture_output=True, cwd=Path(__file__).resolve().parents[1])
        a = sorted(r["tokens_per_s"] for r in now)[len(now) // 2]
        b = sorted(r["tokens_per_s"] for r in then)[len(then) // 2]
        print(f"one process, median of {args.rounds}: this code {a:.0f} tok/s, {args.baseline} "
              f"{b:.0f} tok/s, ratio {a / b:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="demo-student")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--backend", choices=["peft", "unsloth", "both"], default="peft")
    parser.add_argument("--processes", default=None,
                        help="e.g. 1,2: data-parallel process counts to compare")
    parser.add_argument("--baseline", default=None,
                        help="a git revision whose one-process training to compare with")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, for --baseline")
    args = parser.parse_args()
    if args.processes:
        with tempfile.TemporaryDirectory() as tmp:
            rows = Path(tmp) / "rows.jsonl"
            rows.write_text("".join(json.dumps(r) + "\n" for r in examples()))
            compare_processes(args, rows, Path(tmp))
        return
    backends = ["peft", "unsloth"] if args.backend == "both" else [args.backend]
    with tempfile.TemporaryDirectory() as tmp:
        rows = Path(tmp) / "rows.jsonl"
        rows.write_text("".join(json.dumps(r) + "\n" for r in examples()))
        results = {}
        for backend in backends:
            started = time.monotonic()
            done = subprocess.run([sys.executable, "-c", CHILD, str(rows), args.student,
                                   str(Path(tmp) / backend), str(args.steps), backend],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{backend}: failed:\n" + "\n".join(done.stderr.strip().splitlines()[-15:]))
                continue
            results[backend] = json.loads(done.stdout.strip().splitlines()[-1])
            results[backend]["wall"] = time.monotonic() - started
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    print(f"student {args.student}, {args.steps} optimiser steps of 4 examples")
    for backend, r in results.items():
        ratio = r["forward_tokens_per_s"] / r["train_tokens_per_s"]
        print(f"{backend:8s} training {r['train_tokens_per_s']:8.0f} tok/s   forward only "
              f"{r['forward_tokens_per_s']:8.0f} tok/s   forward/training {ratio:.2f}x   "
              f"peak {r['peak_gib']:.2f} GiB   loss {r['first_loss']} -> {r['last_loss']}   "
              f"train {r['seconds']:.0f} s")
    if len(results) == 2:
        speedup = results["unsloth"]["train_tokens_per_s"] / results["peft"]["train_tokens_per_s"]
        print(f"unsloth / peft training speed: {speedup:.2f}x")
    print(f"(largest child process: {peak_children:.2f} GiB)")


if __name__ == "__main__":
    main()
