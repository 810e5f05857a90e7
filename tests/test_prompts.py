"""Prompt templates: each documents its variables, renders them, and fails clearly without one."""

from __future__ import annotations

import re

import pytest

from localdistill.prompts import (
    REPO_PROMPTS,
    PromptError,
    load_prompt,
    render,
    template_names,
)
from localdistill.tasks import load_humaneval

TASK = load_humaneval()[2]
VALUES = {"prompt": TASK.prompt, "description": "", "attempt": "def f():\n    return 1",
          "feedback": "AssertionError\nINPUT: 3.5\nOUTPUT: 3\nEXPECTED: 0.5",
          "entry_point": TASK.entry_point, "count": 10, "guide": "def f():\n    return 0.5",
          "solution": "def f():\n    return 0.25", "method": None, "binding": None,
          "calls": "f(1)\nf(2)", "classes": [], "why": "alike"}
NAMES = template_names()  # the built-in prompts and every refinement strategy's


def _documented(path) -> set[str]:
    header = path.read_text().split("-#}")[0]
    block = header.split("Variables:")[1]
    return set(re.findall(r"^\s{6}(\w+)\s", block, flags=re.M))


@pytest.mark.parametrize("name", NAMES)
def test_each_template_documents_exactly_the_variables_it_uses(name):
    prompt = load_prompt(name)
    assert prompt.path.parent == REPO_PROMPTS
    assert prompt.variables == _documented(prompt.path)


@pytest.mark.parametrize("name", NAMES)
def test_each_template_renders_a_system_and_a_user_message(name):
    needed = {k: v for k, v in VALUES.items() if k in load_prompt(name).variables}
    messages = render(name, **needed)
    roles = [m["role"] for m in messages]
    # a strategy may show the guide as the teacher's own earlier answer (guide-turn)
    assert roles in (["system", "user"], ["system", "user", "assistant", "user"])
    assert TASK.prompt.strip() in "".join(m["content"] for m in messages[1:])
    for message in messages:
        assert "{{" not in message["content"] and "{%" not in message["content"]
    if "solution" in needed:  # the teacher scoring the student's answer (stages/score.py)
        assert VALUES["solution"] in messages[-1]["content"]
        assert VALUES["feedback"] in messages[-1]["content"]
    if "calls" in needed:  # gen-tests asking again shows the calls made before
        assert VALUES["calls"] in messages[-1]["content"]
    if "guide" in needed:
        assert VALUES["guide"] in "".join(m["content"] for m in messages)
        assert VALUES["attempt"] in messages[-1]["content"]
        assert VALUES["feedback"] in messages[-1]["content"]


def test_the_official_shape_puts_the_guide_in_the_teachers_earlier_turn_only_when_there_is_one():
    values = {k: VALUES[k] for k in ("prompt", "description", "attempt", "feedback", "guide")}
    guided = render("refine_guide_turn", **values)
    assert [m["role"] for m in guided] == ["system", "user", "assistant", "user"]
    assert VALUES["guide"] in guided[2]["content"] and TASK.prompt.strip() in guided[1]["content"]
    assert VALUES["guide"] not in guided[3]["content"]
    blind = render("refine_guide_turn", **{**values, "guide": ""})
    assert [m["role"] for m in blind] == ["system", "user"]
    assert TASK.prompt.strip() in blind[1]["content"]


def test_an_earlier_exchange_needs_both_turns(tmp_path, monkeypatch):
    (tmp_path / "attempt.jinja").write_text(
        "{% set earlier_user %}hi{% endset %}Solve {{ prompt }}")
    monkeypatch.setenv("LOCALDISTILL_PROMPTS", str(tmp_path))
    with pytest.raises(PromptError, match="sets only one of earlier_user and earlier_assistant"):
        render("attempt", prompt="def f():")


def test_the_refinement_shows_the_students_code_and_the_feedback_verbatim():
    user = render("refine", **{k: VALUES[k] for k in ("prompt", "description", "attempt",
                                                       "feedback")})[1]["content"]
    assert VALUES["attempt"] in user and VALUES["feedback"] in user


def test_a_description_appears_only_when_given():
    plain = render("attempt", prompt=TASK.prompt, description="")[1]["content"]
    described = render("attempt", prompt=TASK.prompt, description="Round down.")[1]["content"]
    assert described == "Round down.\n\n" + plain


def test_a_missing_variable_names_the_file_and_the_variable():
    with pytest.raises(PromptError, match=r"refine.jinja: needs the variable 'attempt'"):
        render("refine", prompt=TASK.prompt, description="", feedback="x")


def test_users_override_templates_with_their_own_folder(tmp_path, monkeypatch):
    (tmp_path / "attempt.jinja").write_text("Solve: {{ prompt }}")
    monkeypatch.setenv("LOCALDISTILL_PROMPTS", str(tmp_path))
    assert render("attempt", prompt="def f():") == [{"role": "user", "content": "Solve: def f():"}]
    assert load_prompt("refine").path.parent == REPO_PROMPTS  # the rest still come from ours


def test_broken_and_missing_templates_are_one_line_errors(tmp_path, monkeypatch):
    (tmp_path / "attempt.jinja").write_text("line one\n{% if %}\n")
    monkeypatch.setenv("LOCALDISTILL_PROMPTS", str(tmp_path))
    with pytest.raises(PromptError, match=r"attempt.jinja:2: not a valid template"):
        load_prompt("attempt")
    with pytest.raises(PromptError, match="no prompt template 'nope.jinja'"):
        load_prompt("nope")
