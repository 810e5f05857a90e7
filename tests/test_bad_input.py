"""Bad input across the command line, as a user meets it: each case is one row of a table (the
command, the files it is given, what its one error line must name). Every case must end with a
non-zero exit code (2 for bad input, 1 for a failure of the work), exactly one non-empty line on
stderr (no traceback) that names the file, field or flag, and, where it runs against a run
directory that already holds finished work, that work unchanged (or only appended to with whole
lines).

Then hypothesis: the task loaders given arbitrary bytes and rows either load tasks or raise the
one-line TaskFileError; the code extractor on arbitrary and mutated real answers never raises and
never invents code.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from localdistill.extract import _as_body, extract_completion
from localdistill.models.demo import tiny_model_path
from localdistill.tasks import TaskFileError, load_alpaca, load_humaneval, load_jsonl, load_mbpp
from localdistill.tasks.record import Task

SCRIPT = Path(sys.executable).parent / "localdistill"
ANSWERS = Path(__file__).parent / "data" / "model_answers.json"


def _row(**fields) -> str:
    row = {"task_id": "t/1", "prompt": "def add(a, b):\n", "entry_point": "add",
           "tests": ["assert add(1, 2) == 3"]}
    return json.dumps({k: v for k, v in {**row, **fields}.items() if v is not ...})


GOOD_TASKS = "".join(_row(task_id=f"t/{name}", prompt=f"def {name}(a, b):\n", entry_point=name,
                          tests=[f"assert {name}(1, 2) == {value}"]) + "\n"
                     for name, value in (("add", 3), ("sub", -1)))
MBPP_ROW = {"task_id": 601, "text": "Add two numbers.", "code": "def add(a, b):\n    return a + b",
            "test_list": ["assert add(1, 2) == 3"], "test_setup_code": "",
            "challenge_test_list": []}
HUMANEVAL_ROW = {"task_id": "HumanEval/0", "prompt": "def add(a, b):\n",
                 "canonical_solution": "    return a + b\n", "entry_point": "add",
                 "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n"}
ALPACA_ROW = {"task_id": "alpaca/1", "prompt": '"""Add."""\ndef add(a, b):\n',
              "reference_completion": "    return a + b\n"}


def _models(**entries: dict) -> str:
    lines = []
    for name, keys in entries.items():
        lines.append(f"[models.{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def _config(**tables: dict) -> str:
    tables = {"run": {"student": "tiny", "teacher": "tiny", "tasks": ["tasks.jsonl"]}, **tables}
    lines = []
    for table, keys in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def _truncated_gguf(tmp: Path) -> None:
    with open(tiny_model_path(), "rb") as whole:
        (tmp / "cut.gguf").write_bytes(whole.read(4096))


DIRECTORY = object()  # a `files` value: make a directory there
UNREADABLE = object()  # a `files` value: a file nobody may read


@dataclass
class Case:
    id: str
    argv: list[str]  # after `localdistill`; {tmp}, {run}, {down}, {garbage}, {shape} are filled in
    names: tuple[str, ...]  # what the one error line must contain
    files: dict[str, object] = field(default_factory=dict)  # path in {tmp} -> text, bytes, ...
    code: int = 2
    run: bool = False  # {run} is a copy of a run directory holding finished work
    prepare: Callable[[Path], None] | None = None  # more set-up, given {tmp}
    fsize: Callable[[Path], int] | None = None  # RLIMIT_FSIZE in bytes, given {run}
    root_skips: bool = False  # root reads any file: the case cannot happen


ATTEMPT = ["attempt", "tasks.jsonl", "--model", "tiny", "--run", "{run}", "--max-tokens", "8"]

CASES = [
    # --- task files ------------------------------------------------------------------------
    Case("jsonl: a row that is not JSON", ["tasks", "info", "t.jsonl"], ("t.jsonl:2:", "row"),
         {"t.jsonl": _row() + '\n{"task_id": "t/2",\n'}),
    Case("jsonl: a field of the wrong type", ["tasks", "info", "t.jsonl"],
         ("t.jsonl:1:", "prompt", "expected a string"), {"t.jsonl": _row(prompt=3) + "\n"}),
    Case("jsonl: a missing field", ["tasks", "info", "t.jsonl"], ("t.jsonl:1:", "entry_point"),
         {"t.jsonl": _row(entry_point=...) + "\n"}),
    Case("jsonl: a test that is not a string", ["tasks", "info", "t.jsonl"],
         ("t.jsonl:1:", "tests[0]"), {"t.jsonl": _row(tests=[1]) + "\n"}),
    Case("jsonl: an empty file", ["tasks", "info", "t.jsonl"], ("t.jsonl", "no tasks"),
         {"t.jsonl": ""}),
    Case("jsonl: bytes that are not UTF-8", ["tasks", "info", "t.jsonl"],
         ("t.jsonl:2:", "UTF-8"), {"t.jsonl": _row().encode() + b"\n\xff\xfe{}\n"}),
    Case("jsonl: a null byte in a test", ["tasks", "info", "t.jsonl"],
         ("t.jsonl:1:", "tests[0]", "null bytes)"),
         {"t.jsonl": _row(tests=["assert add(1, 2) == 3\x00"]) + "\n"}),
    Case("jsonl: the task file is a directory", ["tasks", "info", "t.jsonl"],
         ("t.jsonl", "directory"), {"t.jsonl": DIRECTORY}),
    Case("jsonl: the task file cannot be read", ["tasks", "info", "t.jsonl"],
         ("t.jsonl", "ermission"), {"t.jsonl": UNREADABLE}, root_skips=True),
    Case("an unknown benchmark", ["tasks", "info", "humaneva"], ("'humaneva'", "humaneval")),
    Case("mbpp: an unknown split", ["tasks", "info", "mbpp:dev=m.jsonl"], ("'dev'", "validation")),
    Case("mbpp: a row that is not JSON", ["tasks", "info", "mbpp:all=m.jsonl"],
         ("m.jsonl:1:", "row", "JSON"), {"m.jsonl": "{'task_id': 601}\n"}),
    Case("mbpp: a row that is a list", ["tasks", "info", "mbpp:all=m.jsonl"],
         ("m.jsonl:2:", "row", "object"), {"m.jsonl": json.dumps(MBPP_ROW) + "\n[1, 2]\n"}),
    Case("mbpp: a missing field", ["tasks", "info", "mbpp:all=m.jsonl"],
         ("m.jsonl:1:", "code"),
         {"m.jsonl": json.dumps({k: v for k, v in MBPP_ROW.items() if k != "code"}) + "\n"}),
    Case("mbpp: a field of the wrong type", ["tasks", "info", "mbpp:all=m.jsonl"],
         ("m.jsonl:1:", "test_list"), {"m.jsonl": json.dumps({**MBPP_ROW, "test_list": "x"})}),
    Case("mbpp: code that is not Python", ["tasks", "info", "mbpp:all=m.jsonl"],
         ("m.jsonl:1:", "code", "not valid Python"),
         {"m.jsonl": json.dumps({**MBPP_ROW, "code": "def add(a, b) return"})}),
    Case("mbpp: bytes that are not UTF-8", ["tasks", "info", "mbpp:all=m.jsonl"],
         ("m.jsonl:1:", "UTF-8"), {"m.jsonl": b"\xe9\n"}),
    Case("mbpp: no such file", ["tasks", "info", "mbpp:all=nowhere.jsonl"], ("nowhere.jsonl",)),
    Case("humaneval: an entry point that is not a name", ["tasks", "info", "humaneval=h.jsonl"],
         ("h.jsonl:1:", "entry_point"), {"h.jsonl": json.dumps({**HUMANEVAL_ROW,
                                                                "entry_point": 5})}),
    Case("humaneval: a test without check()", ["tasks", "info", "humaneval=h.jsonl"],
         ("h.jsonl:1:", "test", "check"),
         {"h.jsonl": json.dumps({**HUMANEVAL_ROW, "test": "assert True"})}),
    Case("humaneval: a .gz file that is not gzip", ["tasks", "info", "humaneval=h.jsonl.gz"],
         ("h.jsonl.gz", "gzip"), {"h.jsonl.gz": b"not gzip at all"}),
    Case("humaneval: a cut .gz file", ["tasks", "info", "humaneval=h.jsonl.gz"],
         ("h.jsonl.gz", "gzip"),
         {"h.jsonl.gz": gzip.compress(json.dumps(HUMANEVAL_ROW).encode() * 50)[:60]}),
    Case("alpaca: bytes that are not UTF-8", ["tasks", "info", "alpaca=a.jsonl"],
         ("a.jsonl:2:", "UTF-8"), {"a.jsonl": json.dumps(ALPACA_ROW).encode() + b"\n\xff\n"}),
    Case("a saved dataset directory that is damaged", ["tasks", "info", "ds"], ("ds",),
         {"ds/dataset_info.json": "{}"}),
    # --- models.toml -----------------------------------------------------------------------
    Case("models.toml: an unknown key", ["--models", "m.toml", "models", "list"],
         ("m.toml", "models.m.colour", "unknown key"),
         {"m.toml": _models(m={"backend": "llama.cpp", "path": "x.gguf", "colour": "red"})}),
    Case("models.toml: not TOML", ["--models", "m.toml", "models", "list"],
         ("m.toml", "TOML", "line 1"), {"m.toml": "[models.m\nbackend = 'llama.cpp'\n"}),
    Case("models.toml: a value of the wrong type", ["--models", "m.toml", "models", "list"],
         ("m.toml", "models.m.context_length", "int"),
         {"m.toml": _models(m={"backend": "llama.cpp", "path": "x.gguf",
                               "context_length": "4k"})}),
    Case("models.toml: no such file", ["--models", "nowhere.toml", "models", "list"],
         ("nowhere.toml",)),
    Case("a model name models.toml lacks", ATTEMPT[:3] + ["nobody", *ATTEMPT[4:]],
         ("'nobody'", "models.toml")),
    Case("a GGUF file that is missing", ["--models", "m.toml", "generate", "m", "-p", "hi"],
         ("models.m.path", "none.gguf", "does not exist"),
         {"m.toml": _models(m={"backend": "llama.cpp", "path": "none.gguf"})}),
    Case("a GGUF file cut to 4 KB", ["--models", "m.toml", "generate", "m", "-p", "hi"],
         ("cut.gguf",), {"m.toml": _models(m={"backend": "llama.cpp", "path": "cut.gguf"})},
         code=1, prepare=_truncated_gguf),
    Case("a prompt longer than the model's context",
         ["--models", "m.toml", "generate", "m", "-p", "hello " * 400],
         ("does not fit models.m.context_length (128)",),
         {"m.toml": _models(m={"backend": "llama.cpp", "path": "demo:tiny",
                               "context_length": 128})}),
    Case("a server that is down", ["--models", "m.toml", "generate", "m", "-p", "hi"],
         ("{down}", "refused", "models.m.url"),
         {"m.toml": _models(m={"backend": "openai", "url": "{down}"})}, code=1),
    Case("a server that answers garbage", ["--models", "m.toml", "generate", "m", "-p", "hi"],
         ("{garbage}", "not JSON"),
         {"m.toml": _models(m={"backend": "openai", "url": "{garbage}"})}, code=1),
    Case("a server that answers JSON of the wrong shape",
         ["--models", "m.toml", "generate", "m", "-p", "hi"], ("{shape}", "choices"),
         {"m.toml": _models(m={"backend": "openai", "url": "{shape}"})}, code=1),
    # --- run directories with finished work ------------------------------------------------
    Case("a run directory from an older version", ATTEMPT, ("{run} ", "format 1", "new run"),
         {"run/localdistill-run.json": '{"format": 1}\n'}, run=True),
    Case("a run directory whose marker is damaged", ATTEMPT, ("{run} ", "another version"),
         {"run/localdistill-run.json": "{not json"}, run=True),
    Case("a run directory whose manifest is damaged", ["build", "tasks.jsonl", "--run", "{run}"],
         ("manifest.json", "not valid JSON"), {"run/manifest.json": "{"}, run=True),
    Case("a server that is down during a rerun",
         ["--models", "m.toml", *ATTEMPT[:3], "m", *ATTEMPT[4:]], ("{down}", "refused"),
         {"m.toml": _models(m={"backend": "openai", "url": "{down}"})}, code=1, run=True),
    Case("a garbage server during a rerun",
         ["--models", "m.toml", *ATTEMPT[:3], "m", *ATTEMPT[4:]], ("{garbage}", "not JSON"),
         {"m.toml": _models(m={"backend": "openai", "url": "{garbage}"})}, code=1, run=True),
    Case("a full disk during a rerun", [*ATTEMPT, "-n", "2", "--temperature", "0.7"],
         ("requests.jsonl", "space"), code=1, run=True,
         fsize=lambda run: (run / "cache" / "requests.jsonl").stat().st_size + 200),
    Case("a full disk writing an export", ["tasks", "export", "humaneval", "-o", "out.jsonl"],
         ("out.jsonl", "space"), code=1, fsize=lambda run: 4096),
    Case("--reuse of a file", [*ATTEMPT, "--reuse", "tasks.jsonl"], ("--reuse", "tasks.jsonl")),
    # --- flags ---------------------------------------------------------------------------------
    Case("conflicting flags: --raw and --system", ["generate", "tiny", "-p", "x", "--raw",
                                                    "--system", "y"], ("--system", "--raw")),
    Case("conflicting flags: an adapter on a model that has one",
         ["eval", "tasks.jsonl", "--model", "tiny+ad", "--adapter", "ad", "--run", "{run}"],
         ("tiny+ad",), {"ad/adapter.gguf": "x"}),
    Case("an adapter path that does not exist", ["eval", "tasks.jsonl", "--model", "tiny",
                                                "--adapter", "nowhere", "--run", "{run}"],
         ("--adapter", "nowhere")),
    Case("an adapter directory without an adapter",
         ["eval", "tasks.jsonl", "--model", "tiny+empty", "--run", "{run}"],
         ("tiny+empty", "adapter.gguf"), {"empty": DIRECTORY}),
    Case("zero samples", [*ATTEMPT, "-n", "0"], ("--samples", "0")),
    Case("a negative temperature", [*ATTEMPT, "--temperature", "-1"], ("--temperature", "-1")),
    Case("zero workers", ["execute", "tasks.jsonl", "--run", "{run}", "--workers", "0"],
         ("--workers", "0")),
    Case("a k of zero", ["eval", "tasks.jsonl", "--model", "tiny", "--run", "{run}", "-k", "1,0"],
         ("-k", "1,0")),
    Case("an unknown method", ["build", "tasks.jsonl", "--run", "{run}", "--methods", "persd,x"],
         ("--methods",)),
    Case("a missing required flag", ["attempt", "tasks.jsonl", "--run", "{run}"], ("--model",)),
    Case("an unknown command", ["atempt"], ("atempt",)),
    Case("--previous that is not a run", ["build", "tasks.jsonl", "--run", "{run}",
                                          "--previous", "empty"],
         ("--previous", "empty"), {"empty": DIRECTORY}),
    # --- run configurations, training data, reports ------------------------------------------
    Case("run config: not TOML", ["run", "c.toml"], ("c.toml", "TOML"),
         {"c.toml": "[run\nstudent = 'tiny'\n"}),
    Case("run config: an unknown key", ["run", "c.toml"], ("c.toml", "[train]", "'epoch'"),
         {"c.toml": _config(train={"epoch": 1})}),
    Case("run config: a value of the wrong type", ["run", "c.toml"], ("c.toml", "samples"),
         {"c.toml": _config(eval={"samples": "three"})}),
    Case("run config: zero workers", ["run", "c.toml"], ("c.toml", "[sandbox]", "workers"),
         {"c.toml": _config(sandbox={"workers": 0})}),
    Case("run config: a negative temperature", ["run", "c.toml"],
         ("c.toml", "[eval]", "temperature"), {"c.toml": _config(eval={"temperature": -1})}),
    Case("run config: zero max_tokens", ["run", "c.toml"], ("c.toml", "[eval]", "max_tokens"),
         {"c.toml": _config(eval={"max_tokens": 0})}),
    Case("run config: a negative teacher temperature", ["run", "c.toml"],
         ("c.toml", "[collect]", "teacher_temperature"),
         {"c.toml": _config(collect={"teacher_temperature": -0.5})}),
    Case("train: messages that are not objects",
         ["train", "d.jsonl", "--student", "tiny", "-o", "out"], ("d.jsonl", "row 1"),
         {"d.jsonl": '{"messages": [1, 2]}\n'}),
    Case("train: a data set with no rows", ["train", "d.jsonl", "--student", "tiny", "-o", "out"],
         ("d.jsonl", "empty"), {"d.jsonl": "\n"}),
    Case("train: a row of the wrong type", ["train", "d.jsonl", "--student", "tiny", "-o", "out"],
         ("d.jsonl", "row 1"), {"d.jsonl": '{"prompt": 1, "completion": "x"}\n'}),
    Case("train: not UTF-8", ["train", "d.jsonl", "--student", "tiny", "-o", "out"],
         ("d.jsonl", "UTF-8"), {"d.jsonl": b'{"prompt": "\xe9", "completion": "x"}\n'}),
    Case("report: a directory that is not a run", ["report", "empty"], ("empty", "summary.json"),
         {"empty": DIRECTORY}),
    Case("report: a summary that is not an object", ["report", "r"],
         ("summary.json", "JSON object"),
         {"r/summary.json": "[1]\n"}),
]


# --- running a case ------------------------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nobody listens there


def _server(answer: Callable[[str], bytes]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            body = answer(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's names
            self._reply()

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._reply()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _shape(path: str) -> bytes:
    if path.endswith("/models"):
        return json.dumps({"data": [{"id": "m"}]}).encode()
    return json.dumps({"choices": [{"reply": "def add(a, b): return a + b"}]}).encode()


@pytest.fixture(scope="module")
def urls():
    garbage = _server(lambda path: b"<html>It works!</html>")
    shape = _server(_shape)
    yield {"down": f"http://127.0.0.1:{_closed_port()}/v1",
           "garbage": f"http://127.0.0.1:{garbage.server_address[1]}/v1",
           "shape": f"http://127.0.0.1:{shape.server_address[1]}/v1"}
    garbage.shutdown()
    shape.shutdown()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A run directory with finished work: the tiny student's attempts, executed."""
    tmp = tmp_path_factory.mktemp("finished")
    (tmp / "tasks.jsonl").write_text(GOOD_TASKS)
    for argv in ([s.replace("{run}", "run") for s in ATTEMPT],
                 ["execute", "tasks.jsonl", "--run", "run"]):
        result = subprocess.run([str(SCRIPT), *argv], capture_output=True, text=True, cwd=tmp,
                                timeout=300)
        assert result.returncode == 0, result.stderr
    return tmp / "run"


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def _limits(fsize: int | None) -> Callable[[], None] | None:
    if fsize is None:
        return None

    def apply() -> None:  # in the child: writes past `fsize` bytes fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return apply


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_naming_it(case: Case, tmp_path, urls, finished_run):
    if case.root_skips and os.geteuid() == 0:
        pytest.skip("root reads any file")
    run = tmp_path / "run"
    if case.run:
        shutil.copytree(finished_run, run)
    values = {"tmp": str(tmp_path), "run": str(run), **urls}
    (tmp_path / "tasks.jsonl").write_text(GOOD_TASKS)
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is DIRECTORY:
            path.mkdir(exist_ok=True)
        elif content is UNREADABLE:
            path.write_text(GOOD_TASKS)
            path.chmod(0)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(_fill(str(content), values))
    if case.prepare:
        case.prepare(tmp_path)
    before = _snapshot(run) if case.run else {}
    argv = [_fill(arg, values) for arg in case.argv]
    env = {k: v for k, v in os.environ.items() if k != "LOCALDISTILL_MODELS"}
    if case.fsize:  # under scripts/coverage.sh, coverage's own data file would hit the limit
        env = {k: v for k, v in env.items() if not k.startswith("COVERAGE_")}
    result = subprocess.run([str(SCRIPT), *argv], capture_output=True, text=True, cwd=tmp_path,
                            env=env, timeout=300,
                            preexec_fn=_limits(case.fsize(run) if case.fsize else None))

    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == case.code, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), result.stderr
    for name in case.names:
        assert _fill(name, values) in lines[0]
    if case.run:
        _assert_only_appended(before, _snapshot(run))
        assert not [p for p in run.rglob("*.tmp")], "a temporary file was left behind"


def _assert_only_appended(before: dict[str, bytes], after: dict[str, bytes]) -> None:
    """Finished work kept: every file is still there and starts with what it held; what was
    added is whole lines (whole JSON records in a .jsonl file)."""
    for name, old in before.items():
        assert name in after, f"{name} was deleted"
        new = after[name]
        assert new.startswith(old), f"{name} was rewritten"
        added = new[len(old):]
        assert not added or added.endswith(b"\n"), f"{name}: a line cut short was left"
        if name.endswith(".jsonl"):
            for line in added.splitlines():
                json.loads(line)


def test_the_table_is_large_enough():
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)


# --- hypothesis: the task loaders ----------------------------------------------------------------

LOADERS = {  # name -> (load a path, the file's name)
    "jsonl": (load_jsonl, "tasks.jsonl"),
    "mbpp": (lambda path: load_mbpp(path, "all"), "mbpp.jsonl"),
    "humaneval": (load_humaneval, "HumanEval.jsonl"),
    "humaneval.gz": (load_humaneval, "HumanEval.jsonl.gz"),
    "alpaca": (load_alpaca, "alpaca.jsonl"),
}
VALID_ROWS = {"jsonl": json.loads(_row(reference="    return a + b\n")), "mbpp": MBPP_ROW,
              "humaneval": HUMANEVAL_ROW, "humaneval.gz": HUMANEVAL_ROW, "alpaca": ALPACA_ROW}
CODE = st.sampled_from(
    ["def add(a, b):\n    return a + b", "def add(a, b):\n", "    return a + b\n", "def add(:",
     "assert add(1, 2) == 3", "assert sub(1, 2) == 3", "def check(candidate):\n    assert "
     "candidate(1, 2) == 3\n", "def check(x):\n    pass", "import math\ndef add(a, b): return 1",
     "class Pair:\n    pass\ndef add(a, b):\n    return Pair()", "x = 1\0", "\x00", "", " ",
     '"""\n>>> add(1, 2)\n3\n"""', "def add(a, b):\n    '''add(1, 2) == 3\\x00'''\n", "add",
     "\ud800", "\r\n\r\n"]
)  # fmt: skip
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | CODE,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)


def _load(loader: str, data: bytes):
    """What a loader makes of a file holding `data`: tasks, or the TaskFileError it raised."""
    import tempfile

    load, name = LOADERS[loader]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(gzip.compress(data) if loader == "humaneval.gz" else data)
        try:
            tasks = load(path)
        except TaskFileError as error:
            message = str(error)
            assert "\n" not in message and message.startswith(f"{path}:"), message
            return error
    assert isinstance(tasks, list) and all(isinstance(t, Task) for t in tasks)
    for task in tasks:
        assert isinstance(task.task_id, str) and isinstance(task.prompt, str)
        assert task.entry_point.isidentifier()
        assert all(isinstance(test, str) for test in (*task.tests, *task.seen_tests))
    return tasks


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@FUZZ
@given(loader=st.sampled_from(sorted(LOADERS)), data=st.binary(max_size=300))
def test_loaders_on_arbitrary_bytes(loader, data):
    _load(loader, data)


@FUZZ
@given(loader=st.sampled_from(sorted(LOADERS)), values=st.lists(JSON, min_size=1, max_size=4))
@example(loader="jsonl", values=[{"\n": None}])  # an unknown field named "\n" broke the line
def test_loaders_on_arbitrary_json_lines(loader, values):
    _load(loader, "\n".join(json.dumps(v) for v in values).encode())


@FUZZ
@given(loader=st.sampled_from(sorted(LOADERS)), data=st.data())
def test_loaders_on_rows_with_fields_missing_or_wrong(loader, data):
    row = dict(VALID_ROWS[loader])
    for key in list(row):
        change = data.draw(st.sampled_from(["keep", "keep", "drop", "json", "code"]))
        if change == "drop":
            del row[key]
        elif change == "json":
            row[key] = data.draw(JSON)
        elif change == "code":
            row[key] = data.draw(CODE)
    if data.draw(st.booleans()):
        row[data.draw(st.text(max_size=8))] = data.draw(JSON)
    text = json.dumps(row, ensure_ascii=data.draw(st.booleans()))
    try:
        encoded = text.encode()
    except UnicodeEncodeError:  # a lone surrogate: the file holds bytes that are not UTF-8
        encoded = text.encode("utf-8", "surrogatepass")
    result = _load(loader, encoded + b"\n")
    if row == VALID_ROWS[loader]:
        assert isinstance(result, list) and len(result) == 1


def test_the_valid_rows_load():
    for loader, row in VALID_ROWS.items():
        (task,) = _load(loader, json.dumps(row).encode() + b"\n")
        assert task.entry_point == "add"


# --- hypothesis: the code extractor --------------------------------------------------------------

def _real_answers() -> list[dict]:
    return [row for row in json.loads(ANSWERS.read_text()) if row["task_id"] in HUMANEVAL]


HUMANEVAL = {task.task_id: task for task in load_humaneval()}
REAL = _real_answers()
PIECES = st.sampled_from(
    ["```python", "```", "```bash", "def add_all(xs):", "    return 1", "\treturn sum(xs)",
     "return", "if __name__ == '__main__':", "print(f([1]))", "assert 1 == 2", "class A:", "@",
     '"""', "\r", "for example:", "x = f(1)", "    ", "\x00", "Here is the code:", "import os"]
)  # fmt: skip


@st.composite
def mutated_answers(draw) -> tuple[Task, str]:
    """A real model answer with lines dropped, added, re-indented, swapped, or cut short."""
    row = draw(st.sampled_from(REAL))
    lines = row["answer"].split("\n")
    for _ in range(draw(st.integers(1, 5))):
        i = draw(st.integers(0, len(lines)))
        change = draw(st.sampled_from(["drop", "insert", "indent", "dedent", "swap", "cut"]))
        if change == "insert":
            lines.insert(i, draw(st.one_of(PIECES, st.text(max_size=20))))
        elif i == len(lines):
            continue
        elif change == "drop":
            del lines[i]
        elif change == "indent":
            lines[i] = " " * draw(st.integers(1, 8)) + lines[i]
        elif change == "dedent":
            lines[i] = lines[i].lstrip()
        elif change == "swap" and i + 1 < len(lines):
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
        elif change == "cut":
            lines = lines[:i] + [lines[i][: draw(st.integers(0, len(lines[i])))]]
    return HUMANEVAL[row["task_id"]], "\n".join(lines)


SUM = Task("t/sum", 'def add_all(xs):\n    """The sum of `xs`."""\n', "add_all",
           ("assert add_all([1]) == 1",))
HEADER_ONLY = Task("t/header", "def add_all(xs):", "add_all", SUM.tests)
ARBITRARY = st.tuples(st.sampled_from([SUM, HEADER_ONLY, *HUMANEVAL.values()][:6]),
                      st.one_of(st.text(), st.lists(st.one_of(PIECES, st.text(max_size=30)),
                                                    max_size=10).map("\n".join)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.one_of(mutated_answers(), ARBITRARY))
def test_the_extractor_keeps_its_contract(case):
    """Never raises; when it finds code, prompt + completion compiles and defines the entry point
    (the header restored); and every line it returns is a line of the answer, re-indented, or the
    placeholder body `...` it puts under a header-only prompt."""
    task, answer = case
    completion = extract_completion(answer, task)
    assert isinstance(completion, str)
    program = task.program(completion)
    if completion != _as_body(answer, task):  # not the fallback: the answer held code
        compile(program, "<program>", "exec", dont_inherit=True)
        defined = [n.name for n in ast.parse(program).body
                   if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        assert task.entry_point in defined
    said = {line.strip() for line in answer.replace("\r\n", "\n").replace("\r", "\n").split("\n")}
    invented = [line for line in completion.split("\n")
                if line.strip() and line.strip() not in said | {"..."}]
    assert not invented, invented
