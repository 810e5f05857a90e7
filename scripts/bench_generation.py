"""Generation benchmark: one request at a time vs batched decoding, side by side.

The same greedy chat requests (HumanEval prompts, as a teacher would see them) go to a model
(a) through llama-cpp-python in process, one after another (the baseline), (b) in process with
`parallel = N` (backends/llamacpp_batched.py: N sequences in one batch), and (c) through
llama.cpp's own server (`localdistill serve`: xllamacpp, N parallel slots) with N requests in
flight through the openai backend. Prints tokens/s for each, the ratio to (a), and where the
greedy outputs differ from (a).

    .venv/bin/localdistill models pull demo
    .venv/bin/python scripts/bench_generation.py [--model demo-teacher] [--parallel 4]
"""

from __future__ import annotations

import argparse
import sys
import time

from localdistill.backends import get_model, open_backend, parse_models, request_for
from localdistill.backends.serving import start_server
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


def differences(base: dict, other: dict, indent: str = "  ", width: int = 30,
                lengths: bool = False) -> list[str]:
    """A line for each key whose texts differ: where they first part, and what follows there
    (`width` characters of each; `lengths`: with the baseline text's length)."""
    lines = []
    for key, a in base.items():
        b = other.get(key, "")
        if a != b:
            at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                      min(len(a), len(b)))
            of = f" of {len(a)}" if lengths else ""
            lines.append(f"{indent}{key}: first difference at character {at}{of} "
                         f"({a[at:at + width]!r} vs {b[at:at + width]!r})")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo-teacher")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--no-server", action="store_true", help="skip (c)")
    args = parser.parse_args()

    spec = get_model(args.model).with_keys(parallel=1)
    batch = requests(spec, args.requests, args.max_tokens)
    print(f"{args.model}: {len(batch)} greedy chat requests, at most {args.max_tokens} tokens each")

    def report(label: str, texts: dict, seconds: float, tokens: int) -> None:
        rate = tokens / seconds
        print(f"{label:<50} {tokens} tokens in {seconds:6.1f} s = {rate:6.1f} tokens/s"
              + (f"  ({rate / base_rate:.2f}x)" if texts is not base_texts else ""))
        if texts is not base_texts:
            lines = differences(base_texts, texts)
            print(f"  greedy outputs identical to (a) for {len(batch) - len(lines)} of "
                  f"{len(batch)} requests")
            print("\n".join(lines[:8]))

    backend = open_backend(spec)
    base_texts, seconds, tokens = run(backend, batch)
    backend.close()
    base_rate = tokens / seconds
    report("(a) llama.cpp in process, one at a time:", base_texts, seconds, tokens)

    backend = open_backend(spec.with_keys(parallel=args.parallel))
    report(f"(b) llama.cpp in process, parallel = {args.parallel}:", *run(backend, batch))
    backend.close()

    if not args.no_server:
        server = start_server(spec, parallel=args.parallel)
        try:
            client_spec = parse_models(
                f'[models.s]\nbackend = "openai"\nurl = "{server.url}"\n'
                f"max_in_flight = {args.parallel}\n", "bench")["s"]
            client = open_backend(client_spec)
            report(f"(c) llama.cpp server, {args.parallel} slots, {args.parallel} in flight:",
                   *run(client, batch))
            client.close()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
