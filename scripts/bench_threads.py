"""Threads, OpenMP's wait policy and a busy neighbour: what llama.cpp decoding gets out of 2 cores.

Each variant runs in a process of its own (OpenMP reads OMP_WAIT_POLICY when it loads) and times
decodes of a batch of ROWS rows (one sequence's next tokens, 300 tokens of context) of the demo
student, alone and beside a busy neighbour: a Python loop like a sandboxed test program, as the
sandbox would run it while the model decodes (issue "Decoding at the speed this CPU allows",
lever 2 and 3). Prints ms a decode and the ratio to the first variant.

    .venv/bin/python scripts/bench_threads.py [--model demo-student] [--rows 8] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time, llama_cpp as L
from localdistill.models import get_model, weights_path
model, threads, rows, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = L.Llama(model_path=str(weights_path(get_model(model))), n_ctx=1024, n_batch=512,
              n_threads=threads, n_threads_batch=threads, verbose=False)
ids = llm.tokenize(b"def f(values):\n    return [v + 1 for v in values]\n" * 60)[:300 + rows]
ctx, mem = llm._ctx.ctx, L.llama_get_memory(llm._ctx.ctx)
batch = L.llama_batch_init(512, 0, 1)
def decode(first, count, logits):
    batch.n_tokens = count
    for i in range(count):
        batch.token[i], batch.pos[i], batch.n_seq_id[i] = ids[first + i], first + i, 1
        batch.seq_id[i][0], batch.logits[i] = 0, logits
    assert L.llama_decode(ctx, batch) == 0
decode(0, 300, False)
times = []
for _ in range(steps):
    started = time.perf_counter()
    decode(300, rows, True)
    times.append(time.perf_counter() - started)
    L.llama_memory_seq_rm(mem, 0, 300, -1)
times.sort()
print(json.dumps({"median": times[len(times) // 2], "worst": times[-1]}))
"""

BUSY = "import time\nend = time.time() + 600\nwhile time.time() < end:\n    sum(range(10000))\n"


def run(model: str, threads: int, rows: int, steps: int, policy: str | None, busy: bool) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    neighbour = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
    try:
        time.sleep(0.2 if busy else 0)
        out = subprocess.run([sys.executable, "-c", CHILD, model, str(threads), str(rows),
                              str(steps)], env=env, capture_output=True, text=True, check=True)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo-student")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    print(f"{args.model}: decodes of {args.rows} rows, {args.steps} each, median (worst)")
    first = None
    for busy in (False, True):
        for threads in (2, 1):
            for policy in (None, "passive", "active"):
                got = run(args.model, threads, args.rows, args.steps, policy, busy)
                first = first or got["median"]
                print(f"  threads {threads}, OMP_WAIT_POLICY={policy or '(unset)':<8} "
                      f"{'beside a busy process' if busy else 'alone':<22} "
                      f"{got['median'] * 1000:7.1f} ms ({got['worst'] * 1000:7.1f})  "
                      f"{first / got['median']:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
