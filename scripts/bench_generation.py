"""Generation benchmark: one request at a time in process vs a parallel-slot server, side by side.

The same greedy chat requests (HumanEval prompts, as a teacher would see them) go to a model
(a) through llama-cpp-python in process, one after another, and (b) through llama.cpp's own server
(`localdistill serve`: xllamacpp, 4 parallel slots) with 4 requests in flight through the openai
backend. Prints tokens/s for each, the ratio, and where the greedy outputs differ.

    .venv/bin/localdistill models pull demo
    .venv/bin/python scripts/bench_generation.py [--model demo-teacher] [--requests 32]
"""

from __future__ import annotations

import argparse
import sys
import time

from localdistill.backends import open_backend, request_for
from localdistill.models import get_model
from localdistill.models.config import parse_models
from localdistill.serve import start_server
from localdistill.tasks import load_humaneval


def requests(spec, count: int, max_tokens: int) -> list:
    tasks = load_humaneval()[:count]
    return [request_for(spec, messages=[{"role": "user", "content":
                                         "Complete this Python function. Answer with code only."
                                         f"\n```python\n{t.prompt}```"}],
                        max_tokens=max_tokens, temperature=0.0, key=t.task_id)
            for t in tasks]


def run(backend, batch) -> tuple[dict, float, int]:
    started = time.perf_counter()
    texts, tokens = {}, 0
    for result in backend.generate(batch):
        texts[result.request.key] = result.samples[0].text
        tokens += result.samples[0].completion_tokens
    return texts, time.perf_counter() - started, tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo-teacher")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()

    spec = get_model(args.model)
    batch = requests(spec, args.requests, args.max_tokens)
    print(f"{args.model}: {len(batch)} greedy chat requests, at most {args.max_tokens} tokens each")

    backend = open_backend(spec)
    one_texts, one_time, one_tokens = run(backend, batch)
    backend.close()
    print(f"(a) llama-cpp-python in process, one at a time: {one_tokens} tokens in "
          f"{one_time:6.1f} s = {one_tokens / one_time:6.1f} tokens/s")

    server = start_server(spec, parallel=args.parallel)
    try:
        client_spec = parse_models(
            f'[models.s]\nbackend = "openai"\nurl = "{server.url}"\n'
            f"max_in_flight = {args.parallel}\n", "bench")["s"]
        client = open_backend(client_spec)
        par_texts, par_time, par_tokens = run(client, batch)
        client.close()
    finally:
        server.stop()
    print(f"(b) llama.cpp server, {args.parallel} slots, {args.parallel} in flight:     "
          f"{par_tokens} tokens in {par_time:6.1f} s = {par_tokens / par_time:6.1f} tokens/s")
    print(f"ratio (b / a): {(par_tokens / par_time) / (one_tokens / one_time):.2f}x")

    same = [k for k in one_texts if one_texts[k] == par_texts.get(k)]
    print(f"greedy outputs identical for {len(same)} of {len(one_texts)} requests")
    for key in one_texts:
        if key not in same:
            a, b = one_texts[key], par_texts.get(key, "")
            at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                      min(len(a), len(b)))
            print(f"  {key}: first difference at character {at} "
                  f"({a[at:at + 30]!r} vs {b[at:at + 30]!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
