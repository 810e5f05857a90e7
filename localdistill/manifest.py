"""manifest.json: what a run directory was made with, so its data can be trusted and reproduced.

It records the versions (localdistill, Python, the libraries that generate and train), the models
(name, backend, and the identity their answers are cached under: the weights' sha256...), the
prompt templates' sha256, the task set, the configuration, each stage's latest report, and a
history line for every time a stage ran (its wall time and the model calls it made), an
interrupted one included. It is rewritten atomically after every stage.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata

from localdistill import __version__, memory
from localdistill.answers import model_identity
from localdistill.hashing import text_digest
from localdistill.models import ModelSpec
from localdistill.progress import StageReport
from localdistill.prompts import load_prompt, template_names
from localdistill.rundir import RunDir
from localdistill.tasks.record import Task

LIBRARIES = ("llama_cpp_python", "transformers", "peft", "datasets", "torch", "vllm", "unsloth")


def versions() -> dict[str, str]:
    found = {"localdistill": __version__, "python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            continue
    return found


def prompt_digests() -> dict[str, str]:
    return {name: text_digest(load_prompt(name).path.read_text(encoding="utf-8"))
            for name in template_names()}


def tasks_entry(spec: str, tasks: Sequence[Task]) -> dict:
    content = "\n".join(f"{t.task_id}\0{t.prompt}\0{t.tests}\0{t.test_setup}" for t in tasks)
    return {"spec": spec, "count": len(tasks), "sha256": text_digest(content)}


def model_entry(spec: ModelSpec) -> dict:
    return {"name": spec.name, "backend": spec.backend, "identity": model_identity(spec)}


def record(run: RunDir, *, report: StageReport | None = None, **fields: object) -> dict:
    """Merge `fields` (and a stage's report) into the run's manifest, atomically."""
    manifest = run.read_json("manifest")
    manifest.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    manifest["versions"] = versions()
    manifest["prompts"] = prompt_digests()
    manifest.update(fields)
    if report is not None:  # the latest report of each stage, and a line for every run of one
        manifest.setdefault("stages", {})[report.stage] = report.as_dict()
        _add_history(manifest, report)
    run.write_json("manifest", manifest)
    return manifest


@contextmanager
def stage(run: RunDir, name: str) -> Iterator[StageReport]:
    """A stage's report, started now. Should the stage be interrupted (Ctrl-C; SIGTERM, which
    the command line turns into one), the time it ran goes into the history, marked
    interrupted, so a resumed stage's wall time (summed over the history) counts it. A SIGKILL
    leaves no chance to write it: that time is lost."""
    memory.reset_peak()  # the stage's own peak, not the process's
    report = StageReport(name)
    try:
        yield report
    except KeyboardInterrupt:
        if report.seconds:  # finished (and recorded) just before the interruption
            raise
        report.finish()
        manifest = run.read_json("manifest")
        _add_history(manifest, report, interrupted=True)
        run.write_json("manifest", manifest)
        raise


def _add_history(manifest: dict, report: StageReport, interrupted: bool = False) -> None:
    manifest.setdefault("history", []).append({
        "stage": report.stage, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": report.seconds, "new_requests": report.new_requests,
        **({"peak_memory_gib": report.peak_memory_gib}
           if report.peak_memory_gib is not None else {}),
        **({"interrupted": True} if interrupted else {})})
