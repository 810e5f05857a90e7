"""The llama.cpp plumbing shared by the in-process decoders: a context of their own for a model
llama-cpp-python has loaded, and a request's prompt as that model sees it (its chat template
rendered, then tokenised).

Kept apart from the batched decoder (llamacpp_batched.py) because the sequential backend
(llamacpp.py) renders prompts and the scorer (llamacpp_score.py) makes contexts the same way:
none of it is about batching.
"""

from __future__ import annotations

import ctypes

from localdistill.backends.base import BackendError, Request


def new_context(llm, n_ctx: int, sequences: int, threads: int, n_batch: int, what: str):
    """A llama.cpp context of its own for a loaded llama-cpp-python model: the model's own
    settings (attention kernel, KV types...) resized, with the model's LoRA adapter applied.
    `what` names it in the error when there is no memory for it."""
    import llama_cpp

    params = type(llm.context_params).from_buffer_copy(llm.context_params)
    params.n_ctx = n_ctx
    params.n_seq_max = sequences
    params.n_batch = params.n_ubatch = n_batch
    params.n_threads = params.n_threads_batch = threads
    ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
    if not ctx:
        raise BackendError(f"llama.cpp could not make a context for {what} (memory?)")
    adapter = getattr(llm, "_lora_adapter", None)
    if adapter is not None:
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
        scales = (ctypes.c_float * 1)(llm.lora_scale)
        if llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, scales):
            llama_cpp.llama_free(ctx)
            raise BackendError(f"llama.cpp could not apply the LoRA adapter to {what}")
    return ctx


def prompt_tokens(llm, formatter, request: Request) -> tuple[list[int], tuple[str, ...]]:
    """The request's prompt as the model sees it, in tokens, and the stop strings its chat
    template adds (none for a plain prompt). `formatter`: `chat_formatter`'s, for chat requests."""
    if request.messages is None:
        return llm.tokenize(request.prompt.encode("utf-8"), special=True), ()
    rendered = formatter(messages=list(request.messages))
    tokens = llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special,
                          special=True)
    extra = rendered.stop or []
    return tokens, tuple([extra] if isinstance(extra, str) else extra)


def chat_formatter(llm, template: str | None):
    """The chat formatter llama-cpp-python would use for this model (see Llama.__init__); None
    when the model has no chat template and models.toml gives none."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    if template:  # models.toml's chat_template, as the sequential backend's _chat_handler
        return Jinja2ChatFormatter(template=template, eos_token="", bos_token="")
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    eos, bos = llm.token_eos(), llm.token_bos()
    return Jinja2ChatFormatter(
        template=template,
        eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
        bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
        stop_token_ids=[eos],
    )
