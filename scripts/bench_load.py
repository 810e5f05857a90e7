"""Load benchmark: does `collect` keep memory flat as the task count grows, and does the sandbox
keep every core busy?

Memory. Builds N distinct tasks from MBPP (all splits) and HumanEval (variants are the same
problems under new ids, with a `# variant k` line in the prompt, so no request or verdict is
shared), then runs the real `localdistill collect` on them with the tiny model as student and
teacher (few tokens per answer: the point is the number of records flowing through, not the
answers), once with every tenth of them (the baseline: the same mix) and once with all N, side by
side. It samples the resident memory of the whole process tree (the CLI, its sandboxes) twice a
second and prints, per stage, the peak for both runs and their ratio: flat memory means a ratio
near 1 although the full run has ten times the tasks.

Sandbox. Runs the N tasks' reference solutions through `tasks check` with one worker and with
one per core, and prints programs per second, the speed-up, and how busy the cores were
(CPU time of its process tree over wall time and cores).

    .venv/bin/python scripts/bench_load.py /work/shared/data [--tasks 3000] [--max-tokens 4]

The full default run takes three to four hours on a 2-core CPU (nothing else running: llama.cpp
on oversubscribed cores slows down many times); `--tasks 300` is a quick look. With `--keep DIR`
it can be interrupted: the same command again resumes each collect where it stopped (its stages
replayed from the run's cache) and keeps the peaks measured so far (`DIR/run-N-peaks.json`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from localdistill.tasks import load_humaneval
from localdistill.tasks.jsonl import save_jsonl
from localdistill.tasks.mbpp import load_mbpp

CLI = str(Path(sys.executable).with_name("localdistill"))


def make_tasks(data: Path, count: int, small: int, work: Path) -> tuple[Path, Path]:
    """`count` tasks, and a baseline of `small` drawn evenly from them: the same mix of MBPP and
    HumanEval prompts (a model's buffers grow to the longest prompt it has seen, so the first
    `small` tasks, all short MBPP ones, would make a baseline that is too light)."""
    pool = load_mbpp(data / "mbpp.jsonl", "all") + load_humaneval()
    tasks = []
    for i in range(count):
        task, variant = pool[i % len(pool)], i // len(pool)
        if variant:
            task = replace(task, task_id=f"{task.task_id}~v{variant}",
                           prompt=f"# variant {variant}\n{task.prompt}")
        tasks.append(task)
    full, base = work / "tasks.jsonl", work / f"tasks-{small}.jsonl"
    save_jsonl(tasks, full)
    save_jsonl(tasks[:: max(count // small, 1)][:small], base)
    return full, base


def tree_rss(root: int) -> int:
    """Resident bytes of `root` and all its descendants (shared pages counted in each)."""
    total = 0
    for pid in _tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


STAGES = ("attempt", "execute", "refine + verify", "teacher answers", "build")


def finished_stages(run: Path) -> int:
    """How many stages the run's manifest records as finished (each run of `collect` records every
    stage again when it finishes, those it replays from the cache after an interruption too)."""
    try:
        return len(json.loads((run / "manifest.json").read_text())["history"])
    except (OSError, ValueError, KeyError):
        return 0


def collect_memory(tasks: Path, count: int, run: Path, max_tokens: int) -> dict:
    """Peak memory per stage of `collect` on `count` tasks. Resumable: the peaks are saved beside
    the run directory as they rise, a rerun after an interruption resumes the collect (its stages
    replayed from the cache) and keeps the higher peak of each stage."""
    saved = run.with_name(run.name + "-peaks.json")
    peaks: dict[str, int] = json.loads(saved.read_text()) if saved.exists() else {}
    manifest = run / "manifest.json"
    done = manifest.exists() and "build" in json.loads(manifest.read_text())["stages"]
    if not done:
        command = [CLI, "collect", str(tasks), "--limit", str(count), "--student", "tiny",
                   "--teacher", "tiny", "--run", str(run), "--max-tokens", str(max_tokens),
                   # one token more for the teacher: the same model under the same request would
                   # be answered from the cache, and the teacher's stages would not be exercised
                   "--teacher-max-tokens", str(max_tokens + 1), "--rounds", "1",
                   "--unchanged-retries", "0"]
        before = finished_stages(run)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)
        while process.poll() is None:
            stage = STAGES[min(finished_stages(run) - before, len(STAGES) - 1)]
            rss = tree_rss(process.pid)
            if rss > peaks.get(stage, 0):
                peaks[stage] = rss
                saved.write_text(json.dumps(peaks))
            time.sleep(0.5)
        if process.returncode:
            sys.exit(f"collect failed (exit {process.returncode}): {process.stderr.read()[-500:]}")
    history = json.loads(manifest.read_text())["history"]
    rows = sum(1 for _ in open(run / "cache" / "requests.jsonl"))
    # wall time: the stages' own seconds, summed over every (interrupted or resumed) run
    return {"peaks": peaks, "seconds": sum(h["seconds"] for h in history), "requests": rows}


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def cpu_times() -> tuple[int, int]:
    """The whole machine's (busy, total) CPU ticks since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return sum(ticks) - idle, sum(ticks)


def check_throughput(tasks: Path, workers: int) -> tuple[float, float]:
    """Seconds to check every reference, and how busy the cores were meanwhile: the whole
    machine's busy share of CPU time (the kernel's count of the command's children missed most
    of the sandboxed programs: it showed 9-14 %), so run it with nothing else on the machine."""
    busy0, total0 = cpu_times()
    started = time.monotonic()
    process = subprocess.run([CLI, "tasks", "check", str(tasks), "--workers", str(workers)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.monotonic() - started
    if process.returncode not in (0, 1):  # 1: some reference failed its tests (reported, fine)
        sys.exit(f"tasks check failed: {process.stderr[-500:]}")
    busy1, total1 = cpu_times()
    return seconds, (busy1 - busy0) / max(total1 - total0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="the folder holding mbpp.jsonl")
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--max-tokens", type=int, default=4)
    parser.add_argument("--keep", type=Path, help="keep the run directories here")
    parser.add_argument("--skip-collect", action="store_true")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # each table as it is done, into a log file too
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-load-"))
    work.mkdir(parents=True, exist_ok=True)
    small = max(args.tasks // 10, 1)
    tasks, baseline = make_tasks(args.data, args.tasks, small, work)
    print(f"{args.tasks} tasks in {tasks}, every {args.tasks // small}th of them in {baseline}")

    if not args.skip_collect:
        base = collect_memory(baseline, small, work / f"run-{small}", args.max_tokens)
        full = collect_memory(tasks, args.tasks, work / f"run-{args.tasks}", args.max_tokens)
        print(f"\ncollect, tiny student and teacher, {args.max_tokens} tokens per answer")
        print(f"{'stage':<18}{'peak MB, ' + str(small) + ' tasks':>22}"
              f"{'peak MB, ' + str(args.tasks) + ' tasks':>22}{'ratio':>8}")
        for stage in STAGES:
            if stage in base["peaks"] and stage in full["peaks"]:
                a, b = base["peaks"][stage] / 2**20, full["peaks"][stage] / 2**20
                print(f"{stage:<18}{a:>22.0f}{b:>22.0f}{b / a:>8.2f}")
        a, b = max(base["peaks"].values()), max(full["peaks"].values())
        print(f"{'whole run':<18}{a / 2**20:>22.0f}{b / 2**20:>22.0f}{b / a:>8.2f}")
        print(f"extra memory per extra task: {(b - a) / (args.tasks - small) / 1024:.1f} KB")
        print(f"wall: {base['seconds']:.0f} s and {full['seconds']:.0f} s; "
              f"model requests: {base['requests']} and {full['requests']}")

    cores = os.cpu_count() or 1
    one, one_busy = check_throughput(tasks, 1)
    many, many_busy = check_throughput(tasks, cores)
    print(f"\nsandbox: the {args.tasks} references checked")
    print(f"  1 worker:  {args.tasks / one:7.1f} programs/s, cores busy {one_busy:.0%}")
    print(f"  {cores} workers: {args.tasks / many:7.1f} programs/s, cores busy {many_busy:.0%}"
          f"  (speed-up {one / many:.2f}x)")


if __name__ == "__main__":
    main()
