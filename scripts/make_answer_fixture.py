"""Regenerate tests/data/model_answers.json: real, greedy chat answers of the demo student and the
tiny model to six HumanEval prompts, the messy inputs tests/test_extract.py checks extraction on.

    .venv/bin/python scripts/make_answer_fixture.py     # about a minute on 2 cores
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from localdistill.backends import get_model, open_backend, request_for
from localdistill.tasks import load_humaneval

IDS = ["HumanEval/0", "HumanEval/2", "HumanEval/7", "HumanEval/13", "HumanEval/23", "HumanEval/28"]
FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "model_answers.json"


def main() -> int:
    tasks = {t.task_id: t for t in load_humaneval()}
    rows = []
    for name in ("demo-student", "tiny"):
        spec = get_model(name)
        backend = open_backend(spec)
        requests = [request_for(spec, messages=[{"role": "user", "content":
                                                 "Complete this Python function:\n```python\n"
                                                 f"{tasks[i].prompt}```"}],
                                temperature=0.0, max_tokens=256, key=i) for i in IDS]
        for result in backend.generate(requests):
            rows.append({"model": name, "task_id": result.request.key,
                         "answer": result.samples[0].text,
                         "finish_reason": result.samples[0].finish_reason})
            print(name, result.request.key, result.samples[0].completion_tokens, file=sys.stderr)
        backend.close()
    FIXTURE.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
