"""The baselines' data: the teacher answers tasks from scratch, and its answers are verified.

StanD trains on the teacher's verified answers to every task; InpD on those to the tasks the
student failed. The teacher gets prompts/direct.jinja; answers go to direct.jsonl with their
verdict on the task's hidden tests. Through the run's cache, like every stage.
"""

from __future__ import annotations

from collections.abc import Sequence

from localdistill import manifest
from localdistill.attempt import check_tasks_have_tests
from localdistill.backends import request_for
from localdistill.cache import generate, judge
from localdistill.execute import Limits, program_for
from localdistill.extract import extract_completion
from localdistill.models import ModelSpec, get_model
from localdistill.progress import Progress, StageReport, bar
from localdistill.prompts import render
from localdistill.rundir import RunDir
from localdistill.tasks.record import Task


def direct_answers(tasks: Sequence[Task], teacher: ModelSpec | str, run: RunDir,
                   samples: int = 1, temperature: float | None = None,
                   max_tokens: int | None = None, seed: int = 0, limits: Limits = Limits(),
                   workers: int | None = None,
                   progress: Progress | None = None) -> StageReport:
    """The teacher's own answers to `tasks`, verified -> direct.jsonl (rewritten whole)."""
    with manifest.stage(run, "teacher answers") as report:
        spec = get_model(teacher) if isinstance(teacher, str) else teacher
        check_tasks_have_tests(tasks)
        requests = [request_for(spec, messages=render("direct", prompt=task.prompt,
                                                      description=task.description),
                                temperature=temperature, max_tokens=max_tokens, seed=seed + i,
                                key=f"{task.task_id}#{i}")
                    for task in tasks for i in range(samples)]
        answers = generate(run, spec, requests, "direct", bar(progress, "teacher", len(requests)))
        by_id = {task.task_id: task for task in tasks}
        completions = {key: extract_completion(a.text, by_id[key.rsplit("#", 1)[0]])
                       for key, a in answers.items()}
        programs = [program_for(by_id[key.rsplit("#", 1)[0]], completion, key=key)
                    for key, completion in completions.items()]
        verdicts = judge(run, programs, limits, workers, bar(progress, "verify", len(programs)))
        records = []
        for request in requests:
            answer, verdict = answers[request.key], verdicts[request.key]
            task_id, sample = request.key.rsplit("#", 1)
            records.append({
                "key": request.key, "task_id": task_id, "sample": int(sample), "teacher": spec.name,
                "request_hash": answer.request_hash, "answer": answer.text,
                "completion": completions[request.key], "passed": verdict["passed"],
                "status": verdict["status"], "feedback": verdict["feedback"]})
        run.write("direct", records)
        report.counts = {"tasks": len(tasks), "teacher answers": len(records),
                         "verified": sum(r["passed"] for r in records),
                         "tasks with a verified answer":
                             len({r["task_id"] for r in records if r["passed"]})}
        report.teacher_tokens = sum(a.completion_tokens for a in answers.values())
        report.count_answers(answers.values())
        return report.finish()
