"""Benchmark: LoRA training speed and peak memory of a student, with a forward-only baseline.

    .venv/bin/python scripts/bench_training.py                      # the demo student, PEFT
    .venv/bin/python scripts/bench_training.py --student tiny --steps 4
    .venv/bin/python scripts/bench_training.py --backend unsloth    # on a CUDA GPU with unsloth

A fixed data set (24 small code examples, the same every run) and a fixed number of optimiser
steps. Each backend trains in its own process (so each peak memory is its own); the baseline is
the same examples through the same model forward only, without gradients, in that process: the
ratio says what training costs over inference on this machine. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
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
from localdistill.train import TrainConfig, train, data
from localdistill.train import peft_backend
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="demo-student")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--backend", choices=["peft", "unsloth", "both"], default="peft")
    args = parser.parse_args()
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
                print(f"{backend}: failed: {done.stderr.strip().splitlines()[-1]}")
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
