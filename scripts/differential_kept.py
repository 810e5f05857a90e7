"""How many of a collect run's verified answers differential checking refutes (no model call).

    LOCALDISTILL_DATA=../shared/data .venv/bin/python scripts/differential_kept.py \
        runs/reproduce-k4/collect --tasks mbpp:train,mbpp:validation

For every set the run built (the student's passing attempts; the rows of standd, inpd,
inpd-matched, persd) each answer is run on inputs generated from its task's tests
(localdistill/sandbox/differential.py), against two oracles:

- the reference alone: the inputs on which the task's reference answers the same twice;
- agreed: of those, the inputs on which a second, independent solution that passed the task's
  tests answers as the reference does (for a student attempt or a refinement, the teacher's
  verified answer from scratch; for a teacher answer, the student's passing attempt or else a
  verified refinement). Where correct programs disagree, the input is outside what the task
  means, or the reference is wrong there: such inputs judge nothing.

It prints one table (and writes it with --out FILE.json): per set, the answers, those checked,
those refuted by each oracle, and why the others were not checked; the JSON also names the rows
refuted on the agreed inputs. With --write-unrefuted, every training set of which more than 5%
of the checked rows are refuted on the agreed inputs is written again without them, beside it in
RUN/data as SET-unrefuted (JSONL and datasets directory, as `build` writes them), to be trained
and evaluated beside the original (docs/results.md).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from localdistill.records import Attempt, Direct, Execution, Refinement, read
from localdistill.rundir import RunDir
from localdistill.sandbox import Limits, run_tests
from localdistill.sandbox.differential import DEFAULT_INPUTS, make_oracle
from localdistill.stages.build import write_dataset
from localdistill.tasks import load_tasks

# The rule: a training set with more than this share of its checked rows refuted is
# trained again without them, beside the original.
UNREFUTED_ABOVE = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--tasks", required=True, help="the task spec the run was collected on")
    parser.add_argument("--inputs", type=int, default=DEFAULT_INPUTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--write-unrefuted", action="store_true",
                        help=f"write SET-unrefuted for each set over {UNREFUTED_ABOVE:.0%} refuted")
    args = parser.parse_args()
    tasks = {t.task_id: t for t in load_tasks(args.tasks)}
    with RunDir(args.run) as run:
        attempts = {a.key: a for a in read(run, Attempt)}
        executions = {e.key: e for e in read(run, Execution)}
        direct = [d for d in read(run, Direct) if d.passed]
        refinements = [r for r in read(run, Refinement) if r.passed]
    data = args.run / "data"
    rows = {m: [json.loads(line) for line in (data / f"{m}.jsonl").read_text().splitlines()]
            for m in ("standd", "inpd", "inpd-matched", "persd")
            if (data / f"{m}.jsonl").is_file()}

    teacher = {}
    for d in direct:
        teacher.setdefault(d.task_id, d.completion)
    student = {}
    for a in attempts.values():
        if executions[a.key].passed:
            student.setdefault(a.task_id, a.completion)
    refined = {}
    for r in refinements:
        refined.setdefault(r.task_id, r.completion)
    by_key = {**{f"direct:{d.key}": d.completion for d in direct},
              **{f"refinement:{r.key}": r.completion for r in refinements}}

    limits = Limits()
    oracles, agreed_cache, verdicts = {}, {}, {}

    def oracle(task_id):
        if task_id not in oracles:
            oracles[task_id] = make_oracle(tasks[task_id], args.inputs, args.seed, limits)
        return oracles[task_id]

    def passes(task_id, completion, tests) -> tuple[bool, list[str]]:
        key = (task_id, completion, tests)
        if key not in verdicts:
            task = tasks[task_id]
            result = run_tests(task.program(completion), tests, task.entry_point,
                               task.test_setup, limits)
            verdicts[key] = (result.passed,
                             [o.test for o in result.outcomes if o.status == "passed"])
        return verdicts[key]

    def agreed(task_id, second):
        key = (task_id, second)
        if key not in agreed_cache:
            agreed_cache[key] = tuple(passes(task_id, second, oracle(task_id).tests)[1])
        return agreed_cache[key]

    def judge(kind, task_id, completion, second, row_id=None):
        verdict = _judge(kind, task_id, completion, second)
        return verdict if row_id is None else {**verdict, "id": row_id}

    def _judge(kind, task_id, completion, second):
        o = oracle(task_id)
        if o.skipped:
            return {"kind": kind, "not checked": f"oracle: {o.skipped}"}
        alone = not passes(task_id, completion, o.tests)[0]
        if second is None:
            return {"kind": kind, "refuted by the reference alone": alone,
                    "not checked": "no second solution"}
        tests = agreed(task_id, second)
        if not tests:
            return {"kind": kind, "refuted by the reference alone": alone,
                    "not checked": "no input the two agree on"}
        return {"kind": kind, "refuted by the reference alone": alone,
                "refuted (agreed inputs)": not passes(task_id, completion, tests)[0]}

    results = []
    for a in attempts.values():
        if executions[a.key].passed:
            results.append(judge("student passes", a.task_id, a.completion,
                                 teacher.get(a.task_id)))
    for method, method_rows in rows.items():
        for row in method_rows:
            source = row["id"].split("/", 1)[1]
            task_id = row["task_id"]
            if row["teacher"] == "reference":
                results.append({"kind": method, "not checked": "the reference itself"})
            elif method == "persd":
                results.append(judge(method, task_id, by_key[f"refinement:{source}"],
                                     teacher.get(task_id), row["id"]))
            else:
                results.append(judge(method, task_id, by_key[f"direct:{source}"],
                                     student.get(task_id, refined.get(task_id)), row["id"]))

    table = []
    for kind in dict.fromkeys(r["kind"] for r in results):
        mine = [r for r in results if r["kind"] == kind]
        checked = [r for r in mine if "refuted (agreed inputs)" in r]
        alone = [r for r in mine if "refuted by the reference alone" in r]
        table.append({
            "set": kind, "answers": len(mine), "checked (agreed inputs)": len(checked),
            "refuted (agreed inputs)": sum(r["refuted (agreed inputs)"] for r in checked),
            "checked by the reference alone": len(alone),
            "refuted by the reference alone": sum(r["refuted by the reference alone"]
                                                  for r in alone),
            "not checked": dict(Counter(r["not checked"].split(" (")[0] for r in mine
                                        if "not checked" in r and
                                        "refuted (agreed inputs)" not in r)),
            "refuted rows (agreed inputs)": sorted(r["id"] for r in checked
                                                   if r["refuted (agreed inputs)"] and "id" in r)})
    for row in table:
        share = (row["refuted (agreed inputs)"] / row["checked (agreed inputs)"]
                 if row["checked (agreed inputs)"] else 0)
        print(f"{row['set']:>15}: {row['answers']:>4} answers, {row['checked (agreed inputs)']:>4} "
              f"checked, {row['refuted (agreed inputs)']:>3} refuted ({share:.1%}); the reference "
              f"alone: {row['refuted by the reference alone']} of "
              f"{row['checked by the reference alone']}; not checked: {row['not checked']}")
    if args.out:
        args.out.write_text(json.dumps({"inputs": args.inputs, "seed": args.seed,
                                        "table": table}, indent=2) + "\n")
    if args.write_unrefuted:
        for row in table:
            if row["set"] in rows:
                write_unrefuted(data, row["set"], rows[row["set"]], row)


def write_unrefuted(data: Path, method: str, method_rows: list[dict], row: dict) -> Path | None:
    """data/METHOD-unrefuted: METHOD's rows without those refuted on the agreed inputs, when
    they are more than UNREFUTED_ABOVE of the rows checked; None (nothing written) otherwise."""
    refuted = set(row["refuted rows (agreed inputs)"])
    checked = row["checked (agreed inputs)"]
    if not checked or len(refuted) / checked <= UNREFUTED_ABOVE:
        print(f"{method}: {len(refuted)} of {checked} checked rows refuted, not over "
              f"{UNREFUTED_ABOVE:.0%}: no {method}-unrefuted")
        return None
    kept = [r for r in method_rows if r["id"] not in refuted]
    target = data / f"{method}-unrefuted"
    write_dataset(kept, target)
    print(f"{method}-unrefuted: {len(kept)} rows ({len(method_rows) - len(kept)} refuted left "
          f"out) in {target}")
    return target


if __name__ == "__main__":
    main()
