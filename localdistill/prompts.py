"""Prompt templates from `prompts/`: one Jinja2 file per prompt, its variables documented in it.

A template's body is the user message; an optional `{% set system %}...{% endset %}` gives the
system message, and optional `earlier_user` / `earlier_assistant` blocks put one earlier exchange
before it (a refinement strategy shows a correct solution as the teacher's own earlier answer
that way, as the official PersDistill pipeline does). Users change prompts by editing the files
(or pointing LOCALDISTILL_PROMPTS at a folder of their own, where any file they put overrides
ours), never code. A variable that a
template uses and the caller did not give is an error naming the file and the variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from localdistill.errors import BadInput

REPO_PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
NAMES = ("attempt", "refine", "direct", "self_repair", "gen_tests")


class PromptError(BadInput):
    """A template is missing, does not parse, or lacks a variable: one line, naming the file."""


@dataclass(frozen=True)
class Prompt:
    name: str
    path: Path
    variables: frozenset[str]  # what the template uses

    def render(self, **values: object) -> list[dict[str, str]]:
        """Chat messages: the system message (if the template sets one), then the user's."""
        missing = self.variables - values.keys()
        if missing:
            raise PromptError(f"{self.path}: needs the variable '{sorted(missing)[0]}' "
                              f"(given: {', '.join(sorted(values)) or 'none'})")
        template = _environment(self.path.parent).get_template(self.path.name)
        module = template.make_module(values)
        user = str(module).strip()
        system = str(getattr(module, "system", "") or "").strip()
        earlier = [(role, str(getattr(module, f"earlier_{role}", "") or "").strip())
                   for role in ("user", "assistant")]
        if bool(earlier[0][1]) != bool(earlier[1][1]):
            raise PromptError(f"{self.path}: sets only one of earlier_user and earlier_assistant "
                              "(an earlier exchange needs both)")
        return ([{"role": "system", "content": system}] if system else []) + [
            {"role": role, "content": text} for role, text in earlier if text] + [
            {"role": "user", "content": user}]


def prompts_dirs() -> list[Path]:
    """Where templates are looked for: the user's folder first, then the repository's."""
    user = os.environ.get("LOCALDISTILL_PROMPTS")
    return ([Path(user)] if user else []) + [REPO_PROMPTS]


def load_prompt(name: str) -> Prompt:
    for directory in prompts_dirs():
        path = directory / f"{name}.jinja"
        if path.is_file():
            break
    else:
        raise PromptError(f"no prompt template '{name}.jinja' in "
                          f"{', '.join(str(d) for d in prompts_dirs())}")
    import jinja2
    from jinja2 import meta

    try:
        parsed = _environment(path.parent).parse(path.read_text(encoding="utf-8"))
    except jinja2.TemplateSyntaxError as e:
        raise PromptError(f"{path}:{e.lineno}: not a valid template ({e.message})") from None
    except UnicodeDecodeError:
        raise PromptError(f"{path}: not UTF-8 text") from None
    used = meta.find_undeclared_variables(parsed) - {"system", "earlier_user",
                                                     "earlier_assistant"}
    return Prompt(name, path, frozenset(used))


def template_names() -> list[str]:
    """Every template found (the user's folder and ours), by name: the built-in prompts and
    those of the refinement strategies."""
    return sorted({p.stem for d in prompts_dirs() if d.is_dir() for p in d.glob("*.jinja")})


def render(name: str, **values: object) -> list[dict[str, str]]:
    return load_prompt(name).render(**values)


def _environment(directory: Path):
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - prompts are plain text for a model, not HTML
    )
