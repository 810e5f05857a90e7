"""mine: functions of a repository picked by the documented rules, made to run standalone,
decontaminated against evaluation sets and split; a real package from site-packages; and the
command end to end on the tiny model."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from localdistill.sandbox import evaluate, execute
from localdistill.stages import mine as m
from localdistill.stages.mine import (
    decontaminate,
    find_candidates,
    is_held_out,
    python_files,
    split,
)
from localdistill.tasks import load_tasks, save_jsonl
from localdistill.tasks.record import Task

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LOCALDISTILL_DATA") or REPO.parent / "shared" / "data")
SCRIPT = Path(sys.executable).parent / "localdistill"
SITE_PACKAGES = next(Path(p) for p in sys.path if p.endswith("site-packages"))


def write_repo(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def standalone(candidate: m.Candidate) -> dict:
    """The namespace prompt + reference makes when run on its own."""
    namespace: dict = {}
    exec(compile(candidate.prompt + candidate.reference, candidate.task_id, "exec"), namespace)
    return namespace


# --- the selection rules ----------------------------------------------------------------------

TOO_LONG_BODY = "".join(f"    total += {i}\n" for i in range(61))
BIG_HELPER = "".join(f"    value += {i}\n" for i in range(150))

RULES = f'''
"""One function for each rule of localdistill.stages.mine."""

from __future__ import annotations

import datetime
import functools
import os
import random
import string
from collections import Counter, OrderedDict

import numpy

from . import sibling
from pkg import other

CACHE = {{}}
COUNT = 0
LIMIT = 10
PATTERN = make_pattern()

try:
    import json as fast_json
except ImportError:
    fast_json = None


class Shape:
    def area_of(self, scale):
        return scale * 2


class TooMany(ValueError):
    """More values than LIMIT."""


def good_function(values: list[int]) -> int:
    """The most common value, at most LIMIT of them."""
    if len(values) > LIMIT:
        raise TooMany(len(values))
    return Counter(values).most_common(1)[0][0]


def outer_function(values):
    def inner(value):
        return value + 1
    return [inner(v) for v in values]


if LIMIT:
    def conditional_def(values):
        """Defined under an if."""
        total = sum(values)
        total += 1
        return total


def twice_defined(values):
    return 1


def twice_defined(values):
    return 2


async def fetch_value(key):
    """Async."""
    value = key
    value += 1
    return value


def count_up(limit):
    """A generator: a candidate, tested on its items."""
    number = 0
    while number < limit:
        yield number
        number += 1


@functools.lru_cache
def cached_square(number):
    """Decorated."""
    square = number * number
    square += 0
    return square


def __getattr__(name):
    """A module hook."""
    if name == "x":
        return 1
    raise AttributeError(name)


def make_pattern():
    """No arguments."""
    pattern = {{}}
    pattern["x"] = 1
    return pattern


def only_varargs(*args, **kwargs):
    """Only *args and **kwargs."""
    total = len(args)
    total += len(kwargs)
    return total


def returns_nothing(values):
    """Prints instead of returning."""
    for value in values:
        print(value)
    print("done")


def opaque_argument(stamp: datetime.date) -> int:
    """Takes an object no literal writes, of a class not the repository's."""
    days = stamp.toordinal()
    days += 1
    return days


def f(a, b):
    total = a + b
    total *= 2
    return total


def short_one(value):
    """Too short."""
    return value + 1


def long_one(total):
    """Too long."""
{TOO_LONG_BODY}    return total


def uses_os(path_name):
    """Reads the environment."""
    home = os.environ.get("HOME", "")
    home += path_name
    return home


def reads_file(name):
    """Opens a file."""
    with open(name) as handle:
        text = handle.read()
    return text


def stamp_label(label):
    """Reads the clock."""
    now = datetime.datetime.now()
    label += str(now)
    return label


def roll_die(sides):
    """Random."""
    roll = random.randint(1, sides)
    roll += 0
    return roll


def roll_twice(sides):
    """Random through a helper."""
    first = roll_die(sides)
    second = roll_die(sides)
    return first + second


def bump_counter(step):
    """Writes a global."""
    global COUNT
    COUNT += step
    return COUNT


def lookup_cached(key):
    """Reads a mutable global."""
    if key in CACHE:
        return CACHE[key]
    return None


def uses_sibling(value):
    """A relative import."""
    result = sibling.double(value)
    result += 1
    return result


def uses_own_package(value):
    """An absolute import of the repository's own package."""
    result = other.double(value)
    result += 1
    return result


def uses_numpy(values):
    """A third-party package."""
    array = numpy.array(values)
    total = array.sum()
    return int(total)


def uses_pattern(text):
    """A module-level value made by a call."""
    matched = PATTERN.get(text)
    matched = matched or 0
    return matched


def uses_json(text):
    """A name bound only under try."""
    value = fast_json.loads(text)
    value = value or 0
    return value


def big_helper(value):
    """Too long itself, and too much context for a caller."""
{BIG_HELPER}    return value


def uses_big_helper(value):
    """Needs a 150-line helper."""
    result = big_helper(value)
    result += 1
    return result
'''

EXPECTED = {
    "Shape.area_of": m.TOO_SHORT,  # a method, mined by the same rules
    "outer_function.<locals>.inner": m.NESTED,
    "conditional_def": m.CONDITIONAL,
    "twice_defined": m.TWICE,
    "fetch_value": m.ASYNC,
    "cached_square": m.DECORATED,
    "__getattr__": m.DUNDER,
    "make_pattern": m.NO_ARGUMENTS,
    "only_varargs": m.VARARGS_ONLY,
    "returns_nothing": m.NO_RETURN,
    "opaque_argument": m.OPAQUE_ARGUMENTS,
    "f": m.UNCLEAR,
    "short_one": m.TOO_SHORT,
    "long_one": m.TOO_LONG,
    "uses_os": m.IMPURE,
    "reads_file": m.IMPURE,
    "stamp_label": m.IMPURE,
    "roll_die": m.IMPURE,
    "roll_twice": m.IMPURE,
    "bump_counter": m.GLOBALS,
    "lookup_cached": m.GLOBALS,
    "uses_sibling": m.RELATIVE,
    "uses_own_package": m.OWN_PACKAGE,
    "uses_numpy": m.THIRD_PARTY,
    "uses_pattern": m.NOT_CARRIABLE,
    "uses_json": m.UNDEFINED,
    "big_helper": m.TOO_LONG,
    "uses_big_helper": m.TOO_MUCH_CONTEXT,
}


def test_every_rule_rejects_its_function_and_says_why(tmp_path):
    write_repo(tmp_path, {"pkg/__init__.py": "", "pkg/rules.py": RULES})
    candidates, stats = find_candidates(tmp_path)
    assert sorted(c.name for c in candidates) == ["count_up", "good_function", "outer_function"]
    rejected = {key.removeprefix("pkg/rules.py::"): why for key, why in stats.rejected}
    assert rejected == EXPECTED
    assert stats.by_reason()[m.TWICE] == 2  # both definitions
    assert stats.functions == len(candidates) + len(stats.rejected) == 32
    assert stats.files == 2 and stats.unparsable == []
    assert stats.stage_report().counts[f"rejected: {m.IMPURE}"] == 5
    # With the sandbox allowed to import installed packages, numpy is no reason to reject.
    candidates, _ = find_candidates(tmp_path, site_packages=True)
    assert "uses_numpy" in {c.name for c in candidates}


def test_the_prompt_keeps_what_the_function_uses_and_nothing_else(tmp_path):
    write_repo(tmp_path, {"pkg/__init__.py": "", "pkg/rules.py": RULES})
    good = next(c for c in find_candidates(tmp_path)[0] if c.name == "good_function")
    assert good.task_id == "mined/pkg/rules.py::good_function" and good.line == 37
    assert good.prompt == textwrap.dedent('''\
        from __future__ import annotations
        from collections import Counter


        LIMIT = 10


        class TooMany(ValueError):
            """More values than LIMIT."""


        def good_function(values: list[int]) -> int:
            """The most common value, at most LIMIT of them."""
        ''')
    assert good.reference == ("    if len(values) > LIMIT:\n        raise TooMany(len(values))\n"
                              "    return Counter(values).most_common(1)[0][0]\n")
    namespace = standalone(good)
    assert namespace["good_function"]([3, 1, 3]) == 3
    with pytest.raises(namespace["TooMany"]):
        namespace["good_function"](list(range(11)))
    task = good.task()
    assert task.source == "mined" and task.entry_point == "good_function" and task.tests == ()
    assert task.metadata == {"path": "pkg/rules.py", "line": 37}


CARRY = '''
"""Helpers and constants travel with the function that needs them."""

import collections
import collections.abc
import itertools as it
import math
import string
from collections import Counter, OrderedDict
from math import sqrt

VOWELS = frozenset("aeiou")
WEIGHT = 3
DOUBLE_WEIGHT = WEIGHT * 2
SPLIT = re_split = None


class ScoreError(ValueError):
    """A word that cannot be scored."""


def _letter_score(letter):
    if letter in VOWELS:
        return 1
    return DOUBLE_WEIGHT


def word_score(word: str) -> float:
    """Vowels count 1, other letters DOUBLE_WEIGHT, times the log of the word's length."""
    if not word.isalpha():
        raise ScoreError(word)
    counts = Counter(word.lower())
    total = sum(_letter_score(letter) * n for letter, n in counts.items())
    return round(total * math.log(len(word) + 1), 6)


def count_mappings(input: list) -> int:
    """How many items of input are mappings (a parameter may be called input)."""
    count = 0
    for item in input:
        count += isinstance(item, collections.abc.Mapping)
    return count


def euclidean_norm(values: list, sqrt=sqrt) -> float:
    """The Euclidean norm of values (sqrt is looked up once, as a default value)."""
    squares = sum(v * v for v in values)
    norm = sqrt(squares)
    return round(norm, 6)


def pair_sums(values: list[int]) -> list[int]:
    """The sum of every pair of values, in order."""
    sums = []
    for first, second in it.combinations(values, 2):
        sums.append(first + second)
    return sums
'''


def test_helpers_and_constants_are_carried_and_the_task_runs_standalone(tmp_path):
    write_repo(tmp_path, {"words.py": CARRY})
    candidates = {c.name: c for c in find_candidates(tmp_path)[0]}
    assert set(candidates) == {"_letter_score", "word_score", "count_mappings", "euclidean_norm",
                               "pair_sums"}
    score = candidates["word_score"]
    header = score.prompt.split("\n\n\n")
    assert header[:6] == ["import math\nfrom collections import Counter",
                          'VOWELS = frozenset("aeiou")', "WEIGHT = 3",
                          "DOUBLE_WEIGHT = WEIGHT * 2",
                          'class ScoreError(ValueError):\n    """A word that cannot be scored."""',
                          "def _letter_score(letter):\n    if letter in VOWELS:\n        return 1\n"
                          "    return DOUBLE_WEIGHT"]
    assert "string" not in score.prompt and "OrderedDict" not in score.prompt
    assert "itertools" not in score.prompt and "SPLIT" not in score.prompt
    assert "import itertools as it\n" in candidates["pair_sums"].prompt
    original: dict = {}
    exec(CARRY, original)
    for word in ("banana", "Sky", "a"):
        assert standalone(score)["word_score"](word) == original["word_score"](word)
    with pytest.raises(ValueError):
        standalone(score)["word_score"]("b4d")
    assert standalone(candidates["pair_sums"])["pair_sums"]([1, 2, 3]) == [3, 4, 5]
    mappings = candidates["count_mappings"]
    assert mappings.prompt.startswith("import collections\nimport collections.abc\n\n\ndef ")
    assert standalone(mappings)["count_mappings"]([{}, 1, {"a": 2}]) == 2
    norm = candidates["euclidean_norm"]
    assert norm.prompt.startswith("from math import sqrt\n\n\ndef euclidean_norm(")
    assert standalone(norm)["euclidean_norm"]([3, 4]) == 5.0
    # ... and in the sandbox gen-tests runs it in (no repository, no site-packages).
    task = score.task()
    values = evaluate(task.program(task.reference), ["word_score('banana')", "word_score('b4d')"])
    assert values[0].status == "ok" and values[0].value == original["word_score"]("banana")
    assert values[1].status == "error" and values[1].detail.startswith("ScoreError")


def test_a_relative_import_nobody_uses_does_not_matter(tmp_path):
    write_repo(tmp_path, {"pkg/__init__.py": "", "pkg/rel.py": '''
        from . import sibling
        from .helpers import unused_name


        def uses_sibling(value):
            """A relative import."""
            result = sibling.double(value)
            result += 1
            return result


        def add_pairwise(left: list, right: list) -> list:
            """Element-wise sums."""
            sums = [a + b for a, b in zip(left, right)]
            sums.reverse()
            return sums[::-1]
        '''})
    candidates, stats = find_candidates(tmp_path)
    assert [c.name for c in candidates] == ["add_pairwise"]
    assert "from ." not in candidates[0].prompt
    assert stats.rejected == [("pkg/rel.py::uses_sibling", m.RELATIVE)]
    assert standalone(candidates[0])["add_pairwise"]([1, 2], [10, 20]) == [11, 22]


# --- which files ------------------------------------------------------------------------------

FUNCTION = '''
def {name}(values: list) -> int:
    """Sum of squares."""
    total = 0
    for value in values:
        total += value * value
    return total
'''
LAYOUT = {
    "lib/core.py": FUNCTION.format(name="kept_function"),
    "lib/generated/gen.py": FUNCTION.format(name="in_ignored_directory"),
    "lib/scratch.py": FUNCTION.format(name="in_ignored_file"),
    "lib/test_core.py": FUNCTION.format(name="in_test_file"),
    "lib/core_test.py": FUNCTION.format(name="in_other_test_file"),
    "tests/helpers.py": FUNCTION.format(name="in_tests_directory"),
    "myenv/pyvenv.cfg": "home = /usr/bin\n",
    "myenv/lib/mod.py": FUNCTION.format(name="in_virtual_environment"),
    ".venv/lib/mod.py": FUNCTION.format(name="in_dot_venv"),
    "notes.txt": "not python\n",
    ".gitignore": "# generated code\ngenerated/\nscratch.py\n",
}


def test_gitignore_is_respected_in_a_git_work_tree(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    write_repo(tmp_path, LAYOUT)
    write_repo(tmp_path, {"lib/untracked.py": FUNCTION.format(name="untracked_function")})
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "lib/core.py", ".gitignore"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    # Tracked, and untracked but not ignored: both mined; ignored, tests and venvs: not.
    assert [str(p) for p in python_files(tmp_path)] == ["lib/core.py", "lib/untracked.py"]
    candidates, stats = find_candidates(tmp_path)
    assert [c.name for c in candidates] == ["kept_function", "untracked_function"]
    # A file forced into the index despite .gitignore is part of the repository's code.
    subprocess.run([*git, "add", "-f", "lib/scratch.py"], check=True)
    assert "lib/scratch.py" in [str(p) for p in python_files(tmp_path)]


def test_gitignore_is_respected_without_git(tmp_path):
    write_repo(tmp_path, LAYOUT)
    assert [str(p) for p in python_files(tmp_path)] == ["lib/core.py"]


# --- decontamination --------------------------------------------------------------------------


def test_copies_of_humaneval_are_dropped_and_the_rest_kept(tmp_path):
    humaneval = {t.task_id: t for t in load_tasks("humaneval")}
    verbatim = humaneval["HumanEval/0"]
    renamed = humaneval["HumanEval/12"]  # same body, other name and docstring
    source = (verbatim.prompt + verbatim.reference + "\n\n"
              "def pick_longest(strings: List[str]) -> Optional[str]:\n"
              '    """Pick a longest of the strings, or None for none."""\n'
              + renamed.reference + "\n\n" + FUNCTION.format(name="sum_of_squares"))
    source = "from typing import Optional\n" + source
    write_repo(tmp_path, {"planted.py": source})
    candidates, _ = find_candidates(tmp_path)
    assert [c.name for c in candidates] == ["has_close_elements", "pick_longest",
                                            "sum_of_squares"]
    kept, dropped = decontaminate([c.task() for c in candidates], list(humaneval.values()))
    assert [t.entry_point for t in kept] == ["sum_of_squares"]
    close = dropped["mined/planted.py::has_close_elements"]
    assert close.task_id == "HumanEval/0" and close.ratio >= m.SIMILAR
    assert re.fullmatch(r"(prompt|body) \d\.\d\d similar to HumanEval/0 \(humaneval\)",
                        close.reason)
    longest = dropped["mined/planted.py::pick_longest"]
    assert (longest.part, longest.task_id) == ("body", "HumanEval/12")
    # Against a user's own set, by the same rule.
    user = Task("mine-eval/1", "def squares(xs):\n", "squares", ("assert True",),
                reference="    total = 0\n    for value in xs:\n        total += value * value\n"
                          "    return total\n", source="user")
    kept, dropped = decontaminate(kept, [user])
    assert kept == [] and dropped["mined/planted.py::sum_of_squares"].reason.endswith(
        "similar to mine-eval/1 (user)")


def test_short_bodies_do_not_match_by_chance():
    a = Task("a", "def add(a, b):\n", "add", (), reference="    return a + b\n")
    b = Task("b", "def plus(x, y):\n", "plus", (), reference="    return a + b\n")
    assert decontaminate([a], [b]) == ([a], {})


# --- the held-out split -----------------------------------------------------------------------


def test_the_held_out_split_is_fixed_by_the_task_ids():
    tasks = [Task(f"mined/m.py::f{i}", "", f"f{i}", ()) for i in range(2000)]
    train, held = split(tasks, 0.2)
    assert len(train) + len(held) == 2000 and not {t.task_id for t in train} & {
        t.task_id for t in held}
    assert 0.17 < len(held) / 2000 < 0.23
    assert split(list(reversed(tasks)), 0.2)[1] == list(reversed(held))  # order does not matter
    assert all(split([t], 0.2)[1] == ([t] if t in held else []) for t in tasks[:50])
    assert split(tasks, 0.0) == (tasks, [])
    assert {t.task_id for t in split(tasks, 0.3)[1]} >= {t.task_id for t in held}  # nested
    assert is_held_out("mined/m.py::f0", 0.2) == (tasks[0] in held)


# --- a real code base ---------------------------------------------------------------------------

REAL = [p for p in (SITE_PACKAGES / "setuptools/_vendor/more_itertools",
                    SITE_PACKAGES / "packaging") if (p / "__init__.py").is_file()]

@pytest.mark.skipif(not REAL, reason="neither more_itertools nor packaging is installed")
def test_a_real_package_gives_tasks_that_run_standalone(tmp_path):
    package = shutil.copytree(REAL[0], tmp_path / REAL[0].name,
                              ignore=shutil.ignore_patterns("__pycache__"))
    candidates, stats = find_candidates(package)
    print(f"\n{REAL[0].name}: {stats.files} files, {stats.functions} functions, "
          f"{stats.candidates} candidates; rejected: {dict(stats.by_reason().most_common())}")
    assert stats.files >= 3 and stats.unparsable == []
    assert stats.functions >= 200 and len(candidates) >= 15
    assert stats.functions == len(candidates) + len(stats.rejected)
    assert any(c.binding for c in candidates) and stats.by_reason()[m.RELATIVE] > 0
    assert len({c.task_id for c in candidates}) == len(candidates)
    # A sample of 20 programs loads in the sandbox, which has neither the package nor
    # site-packages: nothing they need is missing.
    sample = candidates[:: max(1, len(candidates) // 20)][:20]
    assert len(sample) == min(20, len(candidates))
    for candidate in sample:
        task = candidate.task()
        [value] = evaluate(task.program(task.reference), [f"callable({candidate.name})"])
        assert (value.status, value.value) == ("ok", True), (candidate.task_id, value.detail)


# --- the command ------------------------------------------------------------------------------


def run_mine(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), "mine", *args], capture_output=True, text=True,
                          timeout=900, env={**os.environ, **(env or {})})


def test_the_command_refuses_bad_input_in_one_line(tmp_path):
    run = ["--teacher", "tiny", "--run", str(tmp_path / "run")]
    result = run_mine(str(tmp_path / "missing"), "-o", str(tmp_path / "t.jsonl"), *run)
    assert result.returncode == 2 and "not a directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "test_only.py").write_text("def test_x():\n    assert True\n")
    result = run_mine(str(tmp_path / "empty"), "-o", str(tmp_path / "t.jsonl"), *run)
    assert result.returncode == 2 and "no Python files" in result.stderr
    result = run_mine(str(tmp_path), "-o", str(tmp_path / "t.txt"), *run)
    assert result.returncode == 2 and "expected a .jsonl file" in result.stderr
    assert not (tmp_path / "run").exists()  # nothing started


NUMBERS = '''
"""Small numeric helpers."""

import math

SCALE = 10


def clamp_value(value: int, low: int, high: int) -> int:
    """Clamp value into [low, high]."""
    if value < low:
        return low
    if value > high:
        return high
    return value


def digit_sum(number: int) -> int:
    """The sum of the decimal digits of number."""
    total = 0
    number = abs(number)
    while number:
        total += number % 10
        number //= 10
    return total


def scaled_hypotenuse(a: float, b: float) -> float:
    """The hypotenuse of a right triangle with legs a and b, times SCALE."""
    squares = a * a + b * b
    root = math.sqrt(squares)
    return round(root * SCALE, 3)


def count_even(numbers: list) -> int:
    """How many of numbers are even."""
    count = 0
    for n in numbers:
        if n % 2 == 0:
            count += 1
    return count


def sum_of_cubes(limit: int) -> int:
    """The sum of the cubes of 1 to limit."""
    total = 0
    for n in range(1, limit + 1):
        total += n ** 3
    return total
'''


TALLY = '''
class Tally:
    """Counts with a step."""

    def __init__(self, start: int, step: int):
        self.start = start
        self.step = step

    def scaled_total(self, factor: int) -> int:
        """The count after `factor` steps, doubled."""
        total = self.start + self.step * factor
        total *= 2
        return total
'''


@pytest.mark.slow
def test_mine_on_a_small_repository_with_the_tiny_teacher(tmp_path):
    write_repo(tmp_path / "repo", {"calc/numbers.py": NUMBERS, "calc/tally.py": TALLY})
    # The user's own evaluation set holds a copy of sum_of_cubes: it must not be trained on.
    user_eval = tmp_path / "my_eval.jsonl"
    save_jsonl([Task("my-eval/cubes", "def cubes(k):\n", "cubes", ("assert cubes(2) == 9",),
                     reference="    total = 0\n    for n in range(1, k + 1):\n"
                               "        total += n ** 3\n    return total\n")], user_eval)
    output = tmp_path / "out" / "mined.jsonl"
    env = {"LOCALDISTILL_DATA": str(DATA)} if (DATA / "mbpp.jsonl").is_file() else {}
    result = run_mine(str(tmp_path / "repo"), "-o", str(output), "--teacher", "tiny",
                      "--run", str(tmp_path / "run"), "--count", "5", "--min-tests", "1",
                      "--max-tokens", "128", "--temperature", "0", "--held-out", "0.5",
                      "--decontaminate", str(user_eval), env=env)
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    assert re.search(r"candidates\W+6\b", result.stdout)
    assert re.search(r"compared with humaneval\W+164\b", result.stdout)
    if env:
        assert re.search(r"compared with mbpp\W+500\b", result.stdout)
    assert re.search(r"^dropped mined/calc/numbers.py::sum_of_cubes: body 0\.9\d similar to "
                     r"my-eval/cubes \(user\)$", result.stdout, re.M)
    fates = {r["key"]: r for r in map(json.loads, (tmp_path / "run" / "mine.jsonl").open())}
    assert {k for k, r in fates.items() if r["fate"] != "rejected"} == {
        f"mined/calc/numbers.py::{name}" for name in
                          ("clamp_value", "digit_sum", "scaled_hypotenuse", "count_even",
                           "sum_of_cubes")} | {"mined/calc/tally.py::Tally.scaled_total"}
    # the method went through gen-tests like the functions (the tiny teacher's calls may all
    # fail to build the class: then its reason is recorded)
    method = fates["mined/calc/tally.py::Tally.scaled_total"]
    assert method["fate"] in ("task", "held out") or "Tally(...).scaled_total" in method["why"]
    assert fates["calc/tally.py::Tally.__init__"]["why"] == m.SPECIAL_METHOD
    assert fates["mined/calc/numbers.py::sum_of_cubes"]["fate"] == "contaminated"
    held_path = output.with_name("mined.heldout.jsonl")
    written = {}
    for path, label, fate in ((output, "tasks", "task"),
                              (held_path, "held-out tasks", "held out")):
        counts = re.search(rf"wrote (\d+) {label} with (\d+) tests to", result.stdout)
        rows = path.read_text().splitlines()  # both files exist, even when empty
        assert len(rows) == int(counts[1])
        tasks = load_tasks(str(path)) if rows else []
        assert sum(len(t.tests) for t in tasks) == int(counts[2])
        assert all(fates[t.task_id]["fate"] == fate for t in tasks)
        assert all(is_held_out(t.task_id, 0.5) == (fate == "held out") for t in tasks)
        written |= {t.task_id: t for t in tasks}
    assert all(fates[k]["fate"] == "no tests" and fates[k]["why"] for k in fates
               if k not in written and fates[k]["fate"] not in ("contaminated", "rejected"))
    for task in written.values():
        assert task.source == "mined" and task.tests and task.seen_tests == task.tests[:1]
        assert execute(task, task.reference).passed  # every test holds on the real function
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert {"mine", "decontaminate", "gen-tests"} <= set(manifest["stages"])
    # Nothing mined was written outside the run directory and the two task files.
    assert sorted(p.name for p in output.parent.iterdir()) == ["mined.heldout.jsonl",
                                                               "mined.jsonl"]


# --- the package's own modules ------------------------------------------------------------------

OWN_MODULES = {
    "mypkg/__init__.py": "from .util import clamp\n",
    "mypkg/util.py": '''
        import math

        LIMIT = 10


        def clamp(value, low, high):
            """Keep value between low and high."""
            if value < low:
                return low
            return min(value, high)


        def helper(value):
            """The util module's helper."""
            value = value + 1
            return value * 2


        def scaled(value):
            """Scale value to the limit."""
            total = helper(value) * LIMIT
            return math.floor(total)
        ''',
    "mypkg/sub/calc.py": '''
        from mypkg import clamp
        from ..util import scaled


        def bounded_scale(value, high):
            """Scale value, then keep it under high."""
            result = scaled(value)
            result = result + 0
            return clamp(result, 0, high)
        ''',
    "mypkg/clash.py": '''
        from .util import scaled
        from .util import clamp as keep_between


        def helper(value):
            """This module's own helper, not util's."""
            value = value - 1
            return value * 3


        def twice_scaled(value):
            """Both scaled, which needs util's names, and this module's helper."""
            first = scaled(value)
            second = helper(value)
            return first + second


        def renamed_clamp(value):
            """Uses an import under another name."""
            value = value * 2
            value = value + 1
            return keep_between(value, 0, 5)
        ''',
}


def test_a_function_that_imports_its_own_package_carries_what_it_uses(tmp_path):
    """`from mypkg import clamp` (a re-export in __init__.py) and `from ..util import scaled`
    travel as the definitions they name, with what those need in their own module (math,
    LIMIT): the task runs with neither the repository nor its package."""
    write_repo(tmp_path, OWN_MODULES)
    candidates, stats = find_candidates(tmp_path)
    found = {c.name: c for c in candidates}
    task = found["bounded_scale"]
    blocks = task.prompt.split("\n\n\n")
    assert blocks[0] == "import math"
    assert blocks[1] == "LIMIT = 10"
    assert [b.split("(")[0] for b in blocks[2:5]] == ["def clamp", "def helper", "def scaled"]
    assert "mypkg" not in task.prompt and "from ." not in task.prompt
    assert standalone(task)["bounded_scale"](3, 100) == 80
    assert standalone(task)["bounded_scale"](3, 7) == 7
    program = task.task()
    [value] = evaluate(program.program(program.reference), ["bounded_scale(2, 15)"])
    assert value.status == "ok" and value.value == 15  # in the sandbox: no repository there
    rejected = dict(stats.rejected)
    # two modules' `helper` would land in one namespace: refused, not silently shadowed
    assert rejected["mypkg/clash.py::twice_scaled"] == m.NOT_CARRIABLE
    # a renamed import would need the carried definition renamed: still refused
    assert rejected["mypkg/clash.py::renamed_clamp"] == m.RELATIVE


# --- methods ----------------------------------------------------------------------------------

CLASSES = {
    "shop/__init__.py": "",
    "shop/base.py": '''
        class Priced:
            """Something with a price in cents."""

            currency = "EUR"

            def __init__(self, name: str, cents: int):
                self.name = name
                self.cents = cents

            def label(self):
                return f"{self.name}: {self.cents / 100:.2f} {self.currency}"
        ''',
    "shop/items.py": '''
        import functools
        from dataclasses import dataclass, field

        from .base import Priced

        CAP = 5


        class Item(Priced):
            """A priced item sold in packs."""

            def __init__(self, name: str, cents: int, pack: int = 1):
                super().__init__(name, cents)
                self.pack = pack

            def price_of(self, packs: int) -> int:
                """The price of `packs` packs, with every CAP-th pack free."""
                free = packs // CAP
                paid = packs - free
                return paid * self.pack * self.cents

            @staticmethod
            def parse_cents(text: str) -> int:
                """Cents from a price written as '3.20'."""
                euros, _, cents = text.strip().partition(".")
                value = int(euros) * 100
                return value + int((cents + "00")[:2])

            @property
            def unit_price(self):
                """A property: not mined."""
                value = self.cents
                value = value * 1
                return value

            def __eq__(self, other):
                same = isinstance(other, Item)
                same = same and other.name == self.name
                return same


        @dataclass
        class Basket:
            """Counts of items, at most CAP of one kind."""

            owner: str
            counts: dict = field(default_factory=dict)

            def add_item(self, name: str, count: int = 1):
                """Add `count` of `name`, at most CAP in all."""
                have = self.counts.get(name, 0)
                have = min(have + count, CAP)
                self.counts[name] = have


        class Registry(type):
            pass


        class Registered(metaclass=Registry):
            def total_value(self, values: list) -> int:
                """Built by a metaclass: refused."""
                total = sum(values)
                total += 0
                return total


        class Shared:
            seen = []

            def remember_value(self, value: int) -> int:
                """A class whose attribute is a mutable list: refused."""
                count = len(value)
                count += 1
                return count


        class Aliased:
            def double_value(self, value: int) -> int:
                """Named again by its class body: refused."""
                result = value * 2
                result += 0
                return result

            twice = double_value


        @functools.lru_cache
        class Cached:
            def scaled_value(self, value: int) -> int:
                """A class decorated with something else than a dataclass: refused."""
                result = value * 3
                result += 0
                return result
        ''',
}


def _passes(task: Task, completion: str, tests) -> bool:
    """Whether the task's program with `completion` passes `tests` in the sandbox."""
    from localdistill.sandbox import run_tests

    return run_tests(task.program(completion), tuple(tests), task.entry_point,
                     task.test_setup).passed


def _tasks(root: Path) -> tuple[dict, dict]:
    candidates, stats = find_candidates(root)
    return {c.name: c for c in candidates}, dict(stats.rejected)


def test_methods_travel_with_their_class_and_what_it_needs(tmp_path):
    """A method's task: its class from the literals of its constructor, its base class carried
    from another module, the method moved last with its body removed; static methods are called
    on the class; classes that cannot be built as written are skipped with their reason."""
    write_repo(tmp_path, CLASSES)
    found, rejected = _tasks(tmp_path)
    assert set(found) == {"Item.price_of", "Item.parse_cents", "Basket.add_item", "Item.__eq__"}
    price = found["Item.price_of"]
    assert price.binding == "instance" and not price.mutates
    assert price.prompt.rstrip().endswith('"""The price of `packs` packs, with every CAP-th pack '
                                          'free."""')
    assert "class Priced:" in price.prompt and "CAP = 5" in price.prompt
    assert "def parse_cents" in price.prompt and "def __eq__" in price.prompt  # the class whole
    assert "from .base" not in price.prompt
    task = price.task()
    assert task.entry_point == "Item" and task.metadata["method"] == "price_of"
    assert "`price_of` of the class `Item`" in task.description
    tests = ("assert Item('tea', 150, 2).price_of(6) == 1500",
             "assert Item('tea', 150).price_of(2) == 300")
    assert _passes(task, task.reference, tests)  # in the sandbox
    assert found["Item.parse_cents"].binding == "class"
    parse = found["Item.parse_cents"].task()
    assert _passes(parse, parse.reference, ["assert Item.parse_cents('3.2') == 320"])
    assert rejected["shop/items.py::Item.unit_price"] == m.PROPERTY
    assert rejected["shop/items.py::Item.__init__"] == m.SPECIAL_METHOD
    assert rejected["shop/items.py::Registered.total_value"] == m.CLASS_NOT_PLAIN
    assert rejected["shop/items.py::Shared.remember_value"] == m.GLOBALS
    assert rejected["shop/items.py::Aliased.double_value"] == m.CLASS_USES_METHOD
    assert rejected["shop/items.py::Cached.scaled_value"] == m.CLASS_NOT_PLAIN


def test_a_mutating_method_is_tested_on_the_state_it_leaves(tmp_path):
    """`Basket(...).add_item(...)` returns nothing: its tests build the object, call the method
    and compare the object's attributes, as plain data, with what the real method left."""
    from localdistill.stages.gentests import as_test, make_tests, outputs, parse_calls, state_of

    write_repo(tmp_path, CLASSES)
    found, _ = _tasks(tmp_path)
    basket = found["Basket.add_item"]
    assert basket.mutates
    task = basket.task()
    answer = ("```python\nBasket('ann', {'tea': 4}).add_item('tea', 3)\n"
              "Basket('bob').add_item('jam')\nBasket(owner).add_item('x')\n```")
    proposal = parse_calls(answer, task.entry_point, 10, "add_item", "instance")
    assert proposal.calls == ("Basket('ann', {'tea': 4}).add_item('tea', 3)",
                              "Basket('bob').add_item('jam')")
    assert proposal.found == 3  # the third builds from a variable: not literal
    kept, dropped = make_tests(proposal.calls,
                               *outputs(task, [state_of(c) for c in proposal.calls]))
    tests = [as_test(call, state, mutates=True) for call, state in kept]
    assert tests[0] == ("obj = Basket('ann', {'tea': 4})\nobj.add_item('tea', 3)\n"
                        "assert vars(obj) == {'owner': 'ann', 'counts': {'tea': 5}}")
    assert _passes(task, task.reference, tests)
    assert not _passes(task, "        self.counts[name] = count\n", tests)


def test_a_students_answer_to_a_method_is_the_class_or_the_method_alone(tmp_path):
    from localdistill.extract import extract_completion, shown_code

    write_repo(tmp_path, CLASSES)
    found, _ = _tasks(tmp_path)
    task = found["Item.price_of"].task()
    tests = ("assert Item('tea', 150, 2).price_of(6) == 1500",)
    whole = ("```python\nclass Item(Priced):\n    def __init__(self, name, cents, pack=1):\n"
             "        super().__init__(name, cents)\n        self.pack = pack\n\n"
             "    def price_of(self, packs):\n        paid = packs - packs // CAP\n"
             "        return paid * self.pack * self.cents\n```")
    alone = ("The method:\n```python\ndef price_of(self, packs: int) -> int:\n"
             "    \"\"\"Docstring again.\"\"\"\n    paid = packs - packs // CAP\n"
             "    return paid * self.pack * self.cents\n\nprint(Item('a', 1).price_of(2))\n```")
    wrong = "```python\ndef price_of(self, packs):\n    return packs * self.cents\n```"
    for answer, passes in ((whole, True), (alone, True), (wrong, False)):
        completion = extract_completion(answer, task)
        assert _passes(task, completion, tests) is passes, completion
    assert shown_code(task, extract_completion(whole, task)).startswith("class Item(Priced):")
    assert "class Priced" in shown_code(task, extract_completion(alone, task))  # the program


def test_a_mined_method_task_file_loads_back(tmp_path):
    """Both a method with a docstring and one without (its prompt ends with the indented `def`
    line, which the task-file check completes one level deeper) load back."""
    write_repo(tmp_path / "repo", CLASSES)
    found, _ = _tasks(tmp_path / "repo")
    tests = {"price_of": "assert Item('tea', 150).price_of(2) == 300",
             "__eq__": "assert Item('tea', 150).__eq__(Item('tea', 150)) == True"}
    for method, test in tests.items():
        task = found[f"Item.{method}"].task()
        assert task.prompt.rstrip().endswith(":") == (method == "__eq__")  # no docstring
        path = tmp_path / f"{method}.jsonl"
        save_jsonl([Task(task.task_id, task.prompt, task.entry_point, (test,),
                         reference=task.reference, source="mined",
                         description=task.description, metadata=task.metadata)], path)
        [loaded] = load_tasks(str(path))
        assert loaded.metadata["method"] == method and loaded.entry_point == "Item"
        assert _passes(loaded, loaded.reference, loaded.tests)


def test_hostile_code_in_a_mined_class_never_runs_outside_the_sandbox(tmp_path):
    """Mining only parses: a module and a class body that would write a file when run are read,
    never run; the class that runs code in its body is refused, and the method that would write
    is refused as I/O."""
    marker = tmp_path / "ran"
    write_repo(tmp_path / "repo", {"evil/__init__.py": "", "evil/box.py": f'''
        open({str(marker)!r}, "w").write("module")


        class Loud:
            open({str(marker)!r}, "w").write("class body")

            def shout_value(self, value: int) -> int:
                """Runs code in its class body: refused."""
                result = value + 1
                result += 1
                return result


        class Writer:
            def write_value(self, value: int) -> int:
                """Writes a file: refused."""
                handle = open({str(marker)!r}, "w")
                handle.write(str(value))
                return value
        '''})
    found, rejected = _tasks(tmp_path / "repo")
    assert found == {} and not marker.exists()
    assert rejected["evil/box.py::Loud.shout_value"] == m.CLASS_NOT_PLAIN
    assert rejected["evil/box.py::Writer.write_value"] == m.IMPURE


GENERATORS = {
    "pkg/__init__.py": "",
    "pkg/walk.py": '''
        def windows(items, size):
            """Every run of `size` consecutive items, as tuples."""
            for start in range(len(items) - size + 1):
                window = tuple(items[start:start + size])
                yield window


        class Tokens:
            """Words of a text."""

            def __init__(self, text):
                self.text = text

            def longer_than(self, length):
                """The words longer than `length`, in order."""
                for word in self.text.split():
                    if len(word) > length:
                        yield word
    ''',
}


def test_a_generator_is_mined_and_tested_on_its_items(tmp_path):
    """A generator (function or method) is a candidate; gen-tests turns its lazy output into
    `list(...)` tests that its real body passes and a body that returns too few items fails."""
    from localdistill.stages.gentests import as_test, make_tests, materialise, outputs

    write_repo(tmp_path, GENERATORS)
    found, rejected = _tasks(tmp_path)
    assert set(found) == {"windows", "Tokens.longer_than"}, rejected
    for name, calls, wrong in (
            ("windows", ["windows([1, 2, 3], 2)", "windows('abcd', 3)"],
             "    return [tuple(items[:size])]\n"),
            ("Tokens.longer_than", ["Tokens('a bb ccc dddd').longer_than(2)"],
             "        return iter(self.text.split()[:1])\n")):
        task = found[name].task()
        calls, first, second = materialise(task, calls, *outputs(task, calls))
        kept, dropped = make_tests(calls, first, second)
        assert kept and not dropped and all(c.startswith("list(") for c, _ in kept)
        tests = [as_test(call, output) for call, output in kept]
        assert _passes(task, task.reference, tests)
        assert not _passes(task, wrong, tests)


OBJECTS = {
    "geo/__init__.py": "",
    "geo/shapes.py": '''
        class Point:
            """A point of the plane."""

            def __init__(self, x: int, y: int):
                self.x = x
                self.y = y


        class Segment:
            """From one point to another."""

            def __init__(self, start: Point, end: Point):
                self.start = start
                self.end = end

            def length_squared(self) -> int:
                """The squared length."""
                dx = self.end.x - self.start.x
                dy = self.end.y - self.start.y
                return dx * dx + dy * dy

            def __eq__(self, other):
                same = isinstance(other, Segment)
                same = same and (other.start.x, other.start.y) == (self.start.x, self.start.y)
                return same and (other.end.x, other.end.y) == (self.end.x, self.end.y)


        class Meta(type):
            pass


        class Odd(metaclass=Meta):
            def __init__(self, value: int):
                self.value = value
    ''',
    "geo/measure.py": '''
        from __future__ import annotations

        from .shapes import Odd, Point


        def manhattan(a: Point, b: Point) -> int:
            """Blocks walked from a to b."""
            dx = abs(a.x - b.x)
            dy = abs(a.y - b.y)
            return dx + dy


        def odd_value(odd: Odd) -> int:
            """An object of a class that cannot travel: refused."""
            value = odd.value
            value += 1
            return value
    ''',
}


def test_arguments_may_be_objects_of_the_repositorys_classes(tmp_path):
    """An argument annotated with a class of the repository (here only in a lazy annotation,
    never named in the body) carries that class; a constructor taking one carries it too; a
    class that cannot be built as written leaves the function out. The teacher's calls may
    build those objects from literals, `manhattan(Point(1, 2), Point(4, 6))`, and a special
    method is called by its name."""
    from localdistill.stages.gentests import (
        as_test,
        defined_classes,
        make_tests,
        outputs,
        parse_calls,
    )

    write_repo(tmp_path, OBJECTS)
    found, rejected = _tasks(tmp_path)
    assert set(found) == {"manhattan", "Segment.length_squared", "Segment.__eq__"}, rejected
    assert rejected["geo/measure.py::odd_value"] == m.OPAQUE_ARGUMENTS
    assert rejected["geo/shapes.py::Segment.__init__"] == m.SPECIAL_METHOD
    cases = {
        "manhattan": ("manhattan(Point(1, 2), Point(4, 6))\nmanhattan(Point(0, 0), Point(0, 0))\n"
                      "manhattan(Point(x, 1), Point(2, 3))\nmanhattan(Odd(1), Point(1, 1))",
                      None, None, 2, "    return 0\n"),
        "Segment.length_squared": ("Segment(Point(0, 0), Point(3, 4)).length_squared()\n"
                                   "Segment([Point(1, 1)], Point(1, 1)).length_squared()",
                                   "length_squared", "instance", 2,
                                   "        return self.end.x\n"),
        "Segment.__eq__": ("Segment(Point(0, 0), Point(1, 1)).__eq__(Segment(Point(0, 0), "
                           "Point(1, 1)))\nSegment(Point(0, 0), Point(1, 1)).__eq__("
                           "Segment(Point(0, 0), Point(2, 1)))", "__eq__", "instance", 2,
                           "        return True\n"),
    }
    for name, (answer, method, binding, count, wrong) in cases.items():
        candidate = found[name]
        assert "class Point:" in candidate.prompt and "class Odd" not in candidate.prompt
        task = candidate.task()
        classes = defined_classes(task)
        assert "Point" in classes
        proposal = parse_calls(f"```python\n{answer}\n```", task.entry_point, 10, method,
                               binding, classes)
        assert len(proposal.calls) == count, proposal
        assert parse_calls(f"```python\n{answer}\n```", task.entry_point, 10, method,
                           binding).calls == ()  # without the classes, none is literal
        kept, dropped = make_tests(proposal.calls, *outputs(task, proposal.calls))
        if name == "Segment.length_squared":  # a list where a Point belongs crashes it
            assert len(kept) == 1 and sum(dropped.values()) == 1
        else:
            assert len(kept) == count and not dropped
        tests = [as_test(call, output) for call, output in kept]
        assert _passes(task, task.reference, tests)
        assert not _passes(task, wrong, tests)
