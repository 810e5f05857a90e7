"""What an OpenAI-compatible server's error answer says: its own message, and whether (and by how
much) the prompt was over the server's context.

Kept apart from the HTTP client (openai_http.py) because each server words these its own way
(vLLM, llama.cpp's server, OpenAI): the patterns grow with the servers, the client does not.
"""

from __future__ import annotations

import json
import re

from localdistill.backends.base import BackendError

# How servers refuse a prompt longer than their context (HTTP 400): vLLM ("This model's maximum
# context length is ...", "... longer than the maximum model length"), llama.cpp's server
# ("exceeds the available context size", exceed_context_size_error), OpenAI's own code.
OVER_CONTEXT = re.compile(r"maximum context length|maximum model length|available context size|"
                          r"exceed_context_size|context_length_exceeded", re.IGNORECASE)


class DidNotFit(BackendError):
    """The server refused a prompt longer than its context; `prompt_tokens` if it said."""

    def __init__(self, message: str, prompt_tokens: int) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens


def error_message(data: bytes) -> str:
    """The server's own error message, from an OpenAI-style error body or the raw text."""
    text = data.decode("utf-8", "replace")
    try:
        error = json.loads(text)
        error = error.get("error", error.get("detail", error)) if isinstance(error, dict) else error
        text = error.get("message", error) if isinstance(error, dict) else error
    except ValueError:
        pass
    return clip(str(text)) or "no details"


def prompt_length(text: str) -> int:
    """The prompt's length in a server's refusal, where it says (0 where it does not)."""
    said = re.search(r'"n_prompt_tokens":\s*(\d+)|(\d+) in the messages|prompt \(length (\d+)\)',
                     text)
    return int(next(g for g in said.groups() if g)) if said else 0


def clip(text: str, limit: int = 200) -> str:
    """One line, short enough for an error message."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
