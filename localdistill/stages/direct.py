"""The baselines' data: the teacher answers tasks from scratch, and its answers are verified.

StanD trains on the teacher's verified answers to every task; InpD on those to the tasks the
student failed. The teacher gets prompts/direct.jinja; answers go to direct.jsonl with their
verdict on the task's hidden tests. Through the run's cache, like every stage.
"""

from __future__ import annotations

from collections.abc import Sequence

from localdistill import manifest
from localdistill.answers import generate
from localdistill.backends import get_model, request_for
from localdistill.extract import extract_completion
from localdistill.models import ModelSpec
from localdistill.progress import Progress, StageReport, bar
from localdistill.prompts import render
from localdistill.records import Direct, attempt_key, check_tasks_have_tests, write
from localdistill.rundir import RunDir
from localdistill.sandbox import Limits, program_for
from localdistill.tasks.record import Task
from localdistill.verdicts import judge

STAGE = "teacher answers"  # its name in the stage table and the manifest


def direct_answers(tasks: Sequence[Task], teacher: ModelSpec | str, run: RunDir,
                   samples: int = 1, temperature: float | None = None,
                   max_tokens: int | None = None, seed: int = 0, limits: Limits = Limits(),
                   workers: int | None = None,
                   progress: Progress | None = None) -> StageReport:
    """The teacher's own answers to `tasks`, verified -> direct.jsonl (rewritten whole)."""
    with manifest.stage(run, STAGE) as report:
        spec = get_model(teacher) if isinstance(teacher, str) else teacher
        check_tasks_have_tests(tasks)
        wanted = {attempt_key(task.task_id, i): (task, i)
                  for task in tasks for i in range(samples)}
        requests = [request_for(spec, messages=render("direct", prompt=task.prompt,
                                                      description=task.description),
                                temperature=temperature, max_tokens=max_tokens, seed=seed + i,
                                key=key)
                    for key, (task, i) in wanted.items()]
        answers = generate(run, spec, requests, "direct", bar(progress, "teacher", len(requests)))
        completions = {key: extract_completion(answers[key].text, task)
                       for key, (task, _) in wanted.items()}
        programs = [program_for(task, completions[key], key=key)
                    for key, (task, _) in wanted.items()]
        verdicts = judge(run, programs, limits, workers, bar(progress, "verify", len(programs)))
        records = []
        for key, (task, sample) in wanted.items():
            answer, verdict = answers[key], verdicts[key]
            records.append(Direct(key, task.task_id, sample, spec.name, answer.request_hash,
                                  answer.text, completions[key], verdict.passed,
                                  verdict.status, verdict.feedback))
        write(run, Direct, records)
        report.count_all({"tasks": len(tasks), "teacher answers": len(records),
                         "verified": sum(r.passed for r in records),
                         "tasks with a verified answer":
                             len({r.task_id for r in records if r.passed})})
        report.teacher_tokens = sum(a.completion_tokens for a in answers.values())
        report.count_answers(answers.values())
        return report.finish()
