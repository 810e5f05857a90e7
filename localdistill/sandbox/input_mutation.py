"""Inputs for differential checking, made by type-aware mutation of the calls in a task's tests.

Kept apart from the oracle (differential.py) because it is pure: it reads a task's tests, never
runs anything, and gives the same calls for the same task, count and seed. The oracle decides
which of them become tests by running the reference on them in the sandbox.
"""

from __future__ import annotations

import ast
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from localdistill.tasks.record import Task

MAX_ITEMS = 50  # elements in any generated list, string, dict or set (or 2x the tests' largest)
MAX_INT = 10**6  # magnitude of generated integers (or 10x the tests' largest)


@dataclass(frozen=True)
class Call:
    """One call of the function under test: literal positional and keyword arguments."""

    args: tuple
    kwargs: tuple[tuple[str, Any], ...] = ()

    def text(self, entry_point: str) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs]
        return f"{entry_point}({', '.join(parts)})"


# --- the tests' own calls ------------------------------------------------------------------------


def seed_calls(task: Task) -> list[Call]:
    """The distinct calls of the task's function in its tests whose arguments are all literals.
    None for a mined method (its entry point is its class: mutating the constructor's
    arguments alone would not test the method), which the differential check leaves out."""
    calls: list[Call] = []
    if task.metadata.get("method"):
        return calls
    for test in (*task.tests, *task.seen_tests):
        try:
            tree = ast.parse(test)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == task.entry_point):
                continue
            try:
                args = tuple(ast.literal_eval(a) for a in node.args)
                kwargs = tuple((k.arg, ast.literal_eval(k.value)) for k in node.keywords
                               if k.arg is not None)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
            if len(kwargs) != len(node.keywords) or any(isinstance(a, ast.Starred)
                                                        for a in node.args):
                continue
            call = Call(args, kwargs)
            if call not in calls and writable(call):
                calls.append(call)
    return calls


def writable(value: Any) -> bool:
    """Whether `value` (a Call, or a value) is written back exactly by repr + literal_eval."""
    if isinstance(value, Call):
        return all(writable(a) for a in value.args) and all(writable(v)
                                                              for _, v in value.kwargs)
    try:
        again = ast.literal_eval(repr(value))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return identical(again, value)


def identical(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (1 is not True, 1.0 is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


# --- mutation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Bounds:
    max_items: int
    max_int: int
    negatives: bool  # the tests use negative numbers: a sign flip stays in the domain
    min_int: int  # the tests' numbers are all at least 1 (or 0): so are the generated ones
    min_items: int  # 1 unless a test passes an empty string, list, dict or set
    alphabet: str  # characters the tests' strings use


def _bounds(calls: Sequence[Call]) -> _Bounds:
    """How far mutation may go: the sizes, numbers and characters the tests' own calls use."""
    sizes, ints, lowest, chars, negative = [0], [0], [], set(), False
    arguments = [v for c in calls for v in (*c.args, *(v for _, v in c.kwargs))]
    for argument in arguments:
        for value in _leaves_and_containers(argument):
            if isinstance(value, (str, list, tuple, dict, set, bytes)):
                sizes.append(len(value))
            if isinstance(value, str):
                chars.update(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if isinstance(value, int):
                    ints.append(abs(value))
                    lowest.append(value)
                negative = negative or value < 0
    max_int = max(MAX_INT, 10 * max(ints))
    return _Bounds(
        max_items=max(MAX_ITEMS, 2 * max(sizes)), max_int=max_int, negatives=negative,
        min_int=-max_int if negative else min(1, min(lowest, default=0)),
        min_items=1 if min(sizes[1:], default=1) > 0 else 0,
        alphabet="".join(sorted(chars)) or "abc")


def _leaves_and_containers(value: Any):
    yield value
    if isinstance(value, (list, tuple, set)):
        for v in value:
            yield from _leaves_and_containers(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves_and_containers(k)
            yield from _leaves_and_containers(v)


def mutate(value: Any, rng: random.Random, bounds: _Bounds, depth: int = 0) -> Any:
    """One type-aware mutation of a literal value (the same type back)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        choices = [value + 1, value - 1, value * 2, value // 2, 0, 1,
                   rng.randint(-abs(value) - 5 if bounds.negatives else 0, abs(value) + 5)]
        if bounds.negatives:
            choices.append(-value)
        return max(bounds.min_int, min(bounds.max_int, rng.choice(choices)))
    if isinstance(value, float):
        if not math.isfinite(value):
            return value
        choices = [value * 1.5, value / 2, value + 1.0, value - 0.5, round(value), 0.0]
        if bounds.negatives:
            choices.append(-value)
        return float(rng.choice(choices))
    if isinstance(value, str):
        return _mutate_sequence(value, rng, bounds, depth, lambda: rng.choice(bounds.alphabet))
    if isinstance(value, bytes):
        return value
    if isinstance(value, tuple):  # a record (a pair, a point): its fields change, not its width
        if not value:
            return value
        i = rng.randrange(len(value))
        return (*value[:i], mutate(value[i], rng, bounds, depth + 1), *value[i + 1:])
    if isinstance(value, list):
        def new_item():
            return mutate(rng.choice(value), rng, bounds, depth + 1) if value else 0
        return _mutate_sequence(value, rng, bounds, depth, new_item)
    if isinstance(value, set):
        items = list(value)
        if not items:
            return value
        mutated = _mutate_sequence(items, rng, bounds, depth,
                                   lambda: mutate(rng.choice(items), rng, bounds, depth + 1))
        try:
            return set(mutated)
        except TypeError:
            return value
    if isinstance(value, dict):
        if not value:
            return value
        items = dict(value)
        key = rng.choice(list(items))
        action = rng.randrange(3)
        if action == 0:
            items[key] = mutate(items[key], rng, bounds, depth + 1)
        elif action == 1 and len(items) > 1:
            del items[key]
        else:
            new_key = mutate(key, rng, bounds, depth + 1)
            try:
                items[new_key] = mutate(items[key], rng, bounds, depth + 1)
            except TypeError:
                pass
        return items
    return value


def _mutate_sequence(items, rng: random.Random, bounds: _Bounds, depth: int, new_item):
    """Edit, grow, shrink, empty or reorder a list or a string (same type back)."""
    is_text = isinstance(items, str)
    seq = list(items)
    action = rng.randrange(8)
    if action == 0 and seq:  # delete one
        del seq[rng.randrange(len(seq))]
    elif action == 1:  # insert one
        seq.insert(rng.randrange(len(seq) + 1), new_item())
    elif action == 2 and seq and not is_text and depth < 3:  # mutate one element in place
        i = rng.randrange(len(seq))
        seq[i] = mutate(seq[i], rng, bounds, depth + 1)
    elif action == 2 and seq:  # replace one character
        seq[rng.randrange(len(seq))] = new_item()
    elif action == 3:  # grow: repeat itself
        seq = seq + seq
    elif action == 4 and len(seq) > 1:  # shrink: a slice
        start = rng.randrange(len(seq))
        seq = seq[start:start + max(1, len(seq) // 2)]
    elif action == 5:  # empty
        seq = []
    elif action == 6 and len(seq) > 1:  # reorder
        rng.shuffle(seq)
    elif seq:  # duplicate one element
        i = rng.randrange(len(seq))
        seq.insert(i, seq[i])
    seq = seq[:bounds.max_items]
    if len(seq) < bounds.min_items:  # the tests never pass an empty one: keep it in the domain
        seq = list(items)
    return "".join(seq) if is_text else seq


def generate_calls(task: Task, count: int, seed: int) -> list[Call]:
    """Up to `count` distinct new calls mutated from the tests' own (none of them a test's),
    the same for the same task, count and seed."""
    seeds = seed_calls(task)
    if not seeds or count <= 0:
        return []
    rng = random.Random(f"{seed}:{task.task_id}")
    bounds = _bounds(seeds)
    relations = _length_relations(seeds)
    known = {repr(c) for c in seeds}
    out: list[Call] = []
    for _ in range(count * 10):
        if len(out) >= count:
            break
        base = rng.choice(seeds + out)  # mutations of mutations, as a corpus grows
        args, kwargs = list(base.args), list(base.kwargs)
        slots = len(args) + len(kwargs)
        if not slots:
            break  # a function without arguments: nothing to vary
        for slot in rng.sample(range(slots), rng.choice([1, 1, 2]) if slots > 1 else 1):
            if slot < len(args):
                args[slot] = mutate(args[slot], rng, bounds)
            else:
                name, value = kwargs[slot - len(args)]
                kwargs[slot - len(args)] = (name, mutate(value, rng, bounds))
        for size_slot, of in relations:  # an argument that is another's length stays so
            args[size_slot] = len(args[of])
        call = Call(tuple(args), tuple(kwargs))
        if repr(call) not in known and writable(call):
            known.add(repr(call))
            out.append(call)
    return out


def _length_relations(calls: Sequence[Call]) -> list[tuple[int, int]]:
    """(i, j): positional argument i is the length of argument j in every call of the tests
    (`f(arr, n)` with n = len(arr)), a relation a mutated input must keep to stay in the
    function's domain."""
    if not calls or len({len(c.args) for c in calls}) != 1:
        return []
    width = len(calls[0].args)
    relations = []
    for i in range(width):
        for j in range(width):
            if i != j and all(isinstance(c.args[i], int) and not isinstance(c.args[i], bool)
                              and isinstance(c.args[j], (list, tuple, str))
                              and c.args[i] == len(c.args[j]) for c in calls):
                relations.append((i, j))
                break
    return relations
