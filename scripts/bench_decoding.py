"""Decoding benchmark: today's batched decoding against the new levers, side by side.

One invocation decodes the same requests twice per workload, first as the loop decoded them
before the issue "Decoding at the speed this CPU allows" (llama.cpp in process, `parallel = 4`,
no drafting: the baseline) and then with the new settings (by default the demo models' entries in
models.toml as they are now), and prints for each workload tokens/s, wall time, the ratio, how
many answers differ and where, and what drafting did. The workloads (issue 33):

  (a) the demo student on HumanEval's 164 prompts, as evaluation asks them (greedy)
  (b) the demo student on 100 MBPP test prompts, as evaluation asks them (greedy)
  (c) the demo teacher on `restyle` refinement prompts of the kept reproduction answers
      (docs/results/answers/reproduce-k4): 60 distinct prompts greedy, and 60 requests sampled
      as restyle-k4 asked them (15 prompts, each 4 times at 0.7 with its recorded seed)

Then a roofline: the tokens/s that this machine's measured memory bandwidth allows for each
model's weight bytes at batch 1, and the model's prompt-processing rate on this CPU (a bound on
what any number of tokens in one pass can reach), beside what each run reached.

    .venv/bin/python scripts/bench_decoding.py                       # everything (about an hour)
    .venv/bin/python scripts/bench_decoding.py --only a --limit 40    # a quicker look
    .venv/bin/python scripts/bench_decoding.py --new parallel=8,ngram_draft=16

Nothing else should run beside it: two CPU-heavy processes on two cores slow each other far more
than twice (llama.cpp's threads wait for each other at every step).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from bench_generation import differences  # scripts/ is on the path of a script run from it

REPO = Path(__file__).resolve().parent.parent
KEPT = REPO / "docs/results/answers/reproduce-k4/cache/requests.jsonl"
# as scripts/test.sh: MBPP is read from the shared data folder beside the repository
os.environ.setdefault("LOCALDISTILL_DATA", str(REPO.parent / "shared" / "data"))
BASELINE = {"parallel": 4, "ngram_draft": 0, "prefix_reuse": False}


def eval_requests(spec, tasks, key_prefix: str) -> list:
    """The requests `localdistill eval` makes for its first answers (stages/evaluate.py)."""
    from localdistill.backends import request_for
    from localdistill.records import attempt_messages
    from localdistill.stages.evaluate import EvalConfig, sample_key

    config = EvalConfig()
    return [request_for(spec, messages=attempt_messages(t), temperature=0.0,
                        max_tokens=config.max_tokens, seed=config.seed,
                        key=key_prefix + sample_key(t.task_id, 0, 0)) for t in tasks]


def refinement_requests(spec, count: int, sampled: bool) -> list:
    """Restyle prompts the demo teacher was asked in the kept reproduction: sampled, the first
    `count` requests as the `-k4` strategy asked them (each prompt 4 times, seeds 0-3, at 0.7);
    greedy, the first `count` distinct prompts."""
    from localdistill.backends.base import Request

    seen, picked = set(), []
    with KEPT.open() as f:
        for line in f:
            record = json.loads(line)
            asked = record["request"]
            if record.get("stage") != "refine" or asked["temperature"] == 0:
                continue
            if "own way" not in json.dumps(asked["messages"]):  # restyle's prompt
                continue
            text = json.dumps(asked["messages"], sort_keys=True)
            if not sampled and text in seen:
                continue
            seen.add(text)
            picked.append(asked)
            if len(picked) == count:
                break
    return [Request(messages=tuple(a["messages"]), max_tokens=a["max_tokens"], top_p=a["top_p"],
                    temperature=a["temperature"] if sampled else 0.0,
                    seed=a["seed"] if sampled else None, key=f"r{i}")
            for i, a in enumerate(picked)]


def decode(spec, requests) -> dict:
    from localdistill.backends import open_backend

    backend = open_backend(spec)
    try:
        started = time.perf_counter()
        texts, tokens = {}, 0
        for result in backend.generate(requests):
            texts[result.request.key] = result.samples[0].text
            tokens += result.samples[0].completion_tokens
        seconds = time.perf_counter() - started
        stats = getattr(getattr(backend, "batched", None), "stats", None)
    finally:
        backend.close()
    return {"texts": texts, "seconds": seconds, "tokens": tokens, "stats": stats}


def profile(run: dict) -> str:
    """Where a run's time went: prompts, generation steps, the rest (Python, detokenising)."""
    stats = run["stats"]
    if stats is None:
        return ""
    rest = run["seconds"] - stats.prefill_seconds - stats.step_seconds
    return (f"    time: prompts {stats.prefill_seconds:.1f} s ({stats.prefill_tokens:,} tokens, "
            f"{stats.prefill_tokens / max(stats.prefill_seconds, 1e-9):.0f}/s), generation "
            f"{stats.step_seconds:.1f} s ({stats.steps:,} decodes of "
            f"{stats.batch_tokens / max(stats.steps, 1):.1f} rows), the rest {rest:.1f} s")


def tie_gaps(spec, requests, base: dict, other: dict) -> list[float]:
    """For each greedy answer that differs: at the first token where the two part, how far apart
    the model puts the two tokens (logit of the baseline's minus the other's), computed once more
    one sequence at a time. Near zero: a near tie that rounding decides."""
    import llama_cpp
    from llama_cpp import Llama

    from localdistill.backends.llamacpp_batched import chat_formatter, prompt_tokens
    from localdistill.models import weights_path

    llm = Llama(model_path=str(weights_path(spec)), n_ctx=spec.context_length, n_batch=512,
                n_threads=spec.threads or os.cpu_count(), verbose=False)
    formatter = chat_formatter(llm, spec.chat_template)
    gaps = []
    try:
        for request in requests:
            a, b = base[request.key], other.get(request.key, "")
            if a == b or request.temperature:
                continue
            ta = llm.tokenize(a.encode(), add_bos=False, special=True)
            tb = llm.tokenize(b.encode(), add_bos=False, special=True)
            same = len(os.path.commonprefix([ta, tb]))
            if same >= min(len(ta), len(tb)):
                continue  # one is the other cut short (a stop string): no token to compare
            prompt, _ = prompt_tokens(llm, formatter, request)
            llm.reset()
            llm.eval(prompt + ta[:same])
            # the last position's logits (llama-cpp-python's own `scores` stay empty unless
            # every position's are kept)
            logits = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
            gaps.append(float(logits[ta[same]] - logits[tb[same]]))
    finally:
        llm.close()
    return gaps


def memory_bandwidth() -> float:
    """Bytes/s of a plain copy of 512 MB (best of 5): what streaming the weights can reach."""
    import numpy as np

    src = np.ones(512 * 2**20 // 8)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - started)
    return 2 * src.nbytes / best  # read + write


def prompt_rate(spec, tokens: int = 256) -> float:
    """Tokens/s of the model processing `tokens` prompt tokens in one pass (best of 3)."""
    from llama_cpp import Llama

    from localdistill.models import weights_path

    llm = Llama(model_path=str(weights_path(spec)), n_ctx=1024, n_batch=512,
                n_threads=spec.threads or os.cpu_count(), verbose=False)
    try:
        ids = llm.tokenize(("def f(x):\n    return x + 1\n" * 200).encode())[:tokens]
        best = float("inf")
        for _ in range(3):
            llm.reset()
            started = time.perf_counter()
            llm.eval(ids)
            best = min(best, time.perf_counter() - started)
    finally:
        llm.close()
    return tokens / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="abc", help="which workloads (any of a, b, c)")
    parser.add_argument("--limit", type=int, default=None,
                        help="at most this many prompts per workload (default: 164, 100, 60)")
    parser.add_argument("--new", action="append", default=[],
                        help="settings of a new run, key=value,... (default: models.toml's); "
                             "repeat it to compare several against the one baseline")
    parser.add_argument("--student", default="demo-student")
    parser.add_argument("--teacher", default="demo-teacher")
    parser.add_argument("--no-roofline", action="store_true")
    parser.add_argument("--save", help="write every run's answers to this JSON file")
    args = parser.parse_args()

    from localdistill.backends import get_model
    from localdistill.models import weights_path
    from localdistill.tasks import load_humaneval, load_tasks

    variants = []
    for text in args.new or [""]:
        new = {}
        for item in filter(None, text.split(",")):
            key, _, value = item.partition("=")
            new[key] = {"true": True, "false": False}.get(value.lower(), None)
            if new[key] is None:
                new[key] = int(value)
        variants.append(new)

    def limit(n: int) -> int:
        return min(n, args.limit) if args.limit else n

    workloads = []
    student, teacher = get_model(args.student), get_model(args.teacher)
    if "a" in args.only:
        tasks = load_humaneval()[:limit(164)]
        workloads.append(("(a) student, HumanEval", student, eval_requests(student, tasks, "")))
    if "b" in args.only:
        tasks = load_tasks("mbpp:test")[:limit(100)]
        workloads.append(("(b) student, MBPP test", student, eval_requests(student, tasks, "")))
    if "c" in args.only:
        for sampled in (False, True):
            label = "(c) teacher, restyle " + ("sampled 0.7" if sampled else "greedy")
            workloads.append((label, teacher, refinement_requests(teacher, limit(60), sampled)))

    threads = student.threads or os.cpu_count()
    print(f"baseline: {BASELINE}; threads {threads}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    reached: dict[str, list[float]] = {}
    saved: dict[str, dict] = {}
    for label, spec, requests in workloads:
        spec = replace(spec, threads=spec.threads or os.cpu_count())
        base = decode(spec.with_keys(**BASELINE), requests)
        rate_a = base["tokens"] / base["seconds"]
        print(f"\n{label}: {len(requests)} requests")
        print(f"  baseline {base['tokens']:>7,} tokens in {base['seconds']:7.1f} s = "
              f"{rate_a:6.1f} tokens/s")
        print(profile(base))
        saved[label] = {"baseline": base["texts"]}
        for new in variants:
            news = spec.with_keys(**new) if new else spec
            after = decode(news, requests)
            rate_b = after["tokens"] / after["seconds"]
            shown = {k: getattr(news.options, k) for k in BASELINE}
            print(f"  new {shown}")
            print(f"           {after['tokens']:>7,} tokens in {after['seconds']:7.1f} s = "
                  f"{rate_b:6.1f} tokens/s   {rate_b / rate_a:.2f}x "
                  f"(wall time {base['seconds'] / after['seconds']:.2f}x)")
            print(profile(after))
            stats = after["stats"]
            if stats is not None and stats.reused_tokens:
                print(f"    prompt tokens copied from another sequence: {stats.reused_tokens:,}")
            if stats is not None and stats.drafted:
                print(f"    drafting: {stats.drafted:,} tokens drafted, {stats.accepted:,} "
                      f"accepted ({stats.accepted / stats.drafted:.0%}); "
                      f"{stats.batch_tokens / stats.steps:.1f} tokens a decode over "
                      f"{stats.steps:,} decodes")
            lines = differences(base["texts"], after["texts"], indent="    ", width=25,
                                lengths=True)
            print(f"    answers identical to the baseline's: {len(requests) - len(lines)} of "
                  f"{len(requests)}")
            if lines:
                print("\n".join(lines[:10]))
                gaps = sorted(abs(g) for g in tie_gaps(spec, requests, base["texts"],
                                                       after["texts"]))
                if gaps:
                    print(f"    where they part, the two tokens' logits differ by (one sequence "
                          f"at a time): median {gaps[len(gaps) // 2]:.2f}, largest "
                          f"{gaps[-1]:.2f}, over 1.0 for {sum(g > 1 for g in gaps)} of "
                          f"{len(gaps)}")
            reached.setdefault(spec.name, []).append(rate_b)
            saved[label][json.dumps(shown)] = after["texts"]
        if args.save:
            Path(args.save).write_text(json.dumps(saved, indent=1))

    if not args.no_roofline:
        bandwidth = memory_bandwidth()
        print(f"\nroofline: memory bandwidth (numpy copy) {bandwidth / 1e9:.1f} GB/s")
        for spec in {s.name: s for _, s, _ in workloads}.values():
            size = weights_path(spec).stat().st_size
            pp = prompt_rate(replace(spec, threads=spec.threads or os.cpu_count()))
            print(f"  {spec.name}: {size / 1e6:.0f} MB of weights -> at most "
                  f"{bandwidth / size:.0f} tokens/s at batch 1 (memory bound); prompt "
                  f"processing {pp:.0f} tokens/s (compute bound for tokens in one pass); "
                  f"reached: {', '.join(f'{r:.0f}' for r in reached[spec.name])} tokens/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
