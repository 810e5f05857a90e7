"""Training examples: rows rendered exactly as the student sees them at inference, tokenised, with
the loss on the completion only.

A row with `messages` (what `build` writes) is rendered with the student's chat template: the
prompt is `apply_chat_template(messages[:-1], add_generation_prompt=True)`, the very text the
backends send; the target is the rest of the rendered conversation (the answer and the template's
end-of-turn token, so the student learns to stop). A row with only `prompt` and `completion`
becomes a user/assistant chat when the tokenizer has a chat template, and plain text followed by
the end-of-sequence token when it has none. Prompt and target are tokenised separately, as at
inference (the prompt alone, then generated tokens), and examples longer than `max_length` are left
out rather than cut (a cut target teaches unfinished code).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from localdistill.errors import BadInput


@dataclass(frozen=True)
class Example:
    input_ids: tuple[int, ...]
    prompt_tokens: int  # the first `prompt_tokens` ids carry no loss
    # a `score` row's teacher, per answer token: (top ids, top log-probs, rest log-prob); its
    # loss is the distillation divergence, not the cross-entropy of its (the student's) tokens
    teacher: tuple | None = None

    @property
    def completion_tokens(self) -> int:
        return len(self.input_ids) - self.prompt_tokens


def load_rows(path: Path | str) -> list[dict]:
    """Rows of a data set: a `build` output directory (save_to_disk), or a JSONL file."""
    path = Path(path)
    if path.is_dir():
        from datasets import load_from_disk

        try:
            rows = list(load_from_disk(str(path)))
        except (FileNotFoundError, ValueError) as e:
            raise BadInput(f"{path}: not a saved Hugging Face dataset ({e})") from None
    elif path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise BadInput(f"{path}: not UTF-8 (byte {e.start}); save it as UTF-8") from None
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise BadInput(f"{path}:{number}: not valid JSON") from None
            if not isinstance(row, dict):
                raise BadInput(f"{path}:{number}: expected a JSON object")
            rows.append(row)
    else:
        raise BadInput(f"{path}: no such data set (a directory written by `localdistill build` "
                       "or a JSONL file of prompt/completion rows)")
    for number, row in enumerate(rows, 1):
        if is_scored(row):  # a `score` data set's row
            continue
        if not _messages(row) and not (isinstance(row.get("prompt"), str)
                                       and isinstance(row.get("completion"), str)):
            raise BadInput(f"{path}: row {number}: needs `messages` or `prompt` and "
                           "`completion` strings")
    if not rows:
        raise BadInput(f"{path}: the data set is empty")
    return rows


def is_scored(row: dict) -> bool:
    """A row of teacher scores (stages/score.py), trained by distillation; in a data set that
    mixes both kinds (persd+tokd) the ordinary rows hold empty score columns."""
    return row.get("top_ids") is not None and row.get("input_ids") is not None


def rows_digest(rows: Sequence[dict]) -> str:
    """What a data set holds, whatever its format or place: train.json keeps it, so an adapter is
    known to be trained on the same data after its run directory was moved or copied."""
    text = json.dumps(list(rows), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _messages(row: dict) -> list[dict] | None:
    messages = row.get("messages")
    if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str) for m in messages):
        return None
    if len(messages) >= 2 and messages[-1]["role"] == "assistant":
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    return None


def render(row: dict, tokenizer) -> tuple[str, str]:
    """(prompt text, target text) of a row for this tokenizer."""
    messages = _messages(row)
    if messages is None and getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": row["prompt"]},
                    {"role": "assistant", "content": row["completion"]}]
    if messages is None:
        return row["prompt"], row["completion"] + (tokenizer.eos_token or "")
    if not getattr(tokenizer, "chat_template", None):
        raise BadInput("the student's tokenizer has no chat template; give rows with "
                       "`prompt` and `completion` instead of `messages`")
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True,
                                           tokenize=False)
    whole = tokenizer.apply_chat_template(messages, tokenize=False)
    if not whole.startswith(prompt):
        raise BadInput("the chat template renders the conversation so that it does not start "
                       "with its own prompt; cannot separate prompt from answer")
    return prompt, whole[len(prompt):].rstrip("\n")


def tokenize(rows: Sequence[dict], tokenizer, max_length: int) -> tuple[list[Example], int]:
    """Examples, and how many rows were left out for being longer than `max_length`."""
    examples, too_long = [], 0
    bos = getattr(tokenizer, "bos_token_id", None)  # (no tokenizer needed for `score` rows)
    add_bos = bool(getattr(tokenizer, "add_bos_token", False)) and bos is not None
    for row in rows:
        if is_scored(row):  # a `score` row: tokenised already
            if len(row["input_ids"]) > max_length:
                too_long += 1
                continue
            examples.append(Example(tuple(row["input_ids"]), row["prompt_tokens"], (
                tuple(map(tuple, row["top_ids"])), tuple(map(tuple, row["top_logprobs"])),
                tuple(row["rest"]))))
            continue
        prompt, target = render(row, tokenizer)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if add_bos and (not prompt_ids or prompt_ids[0] != bos):
            prompt_ids = [bos, *prompt_ids]
        target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
        if not target_ids:
            continue
        if len(prompt_ids) + len(target_ids) > max_length:
            too_long += 1
            continue
        examples.append(Example(tuple(prompt_ids) + tuple(target_ids), len(prompt_ids)))
    return examples, too_long


def digest(examples: Sequence[Example]) -> str:
    """What a checkpoint must match to be resumed: the exact token sequences."""
    h = hashlib.sha256()
    for example in examples:
        h.update(json.dumps([example.prompt_tokens, example.input_ids]).encode())
        if example.teacher is not None:
            h.update(json.dumps(example.teacher).encode())
    return h.hexdigest()
