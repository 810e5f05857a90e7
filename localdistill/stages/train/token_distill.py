"""Token-level distillation: the loss between the student's distribution and the teacher's, on
the teacher's top-k tokens and one bucket for the rest (issue "Beyond the paper: token-level
personalised distillation").

The teacher's scoring (stored per continuation position: the top-k token ids and their
log-probabilities) is all training needs; the teacher is never loaded. At each position both
distributions are reduced to the same K + 1 outcomes: the teacher's K tokens, and "any other
token" (probability 1 - the K's). The student's full distribution is reduced the same way, so the
divergence is between two distributions over K + 1 outcomes: exact when the teacher's top-k
holds all its mass, and otherwise a lower bound of the full-vocabulary divergence (merging
outcomes never increases a divergence), equal to it when the two distributions agree within the
rest bucket.

Divergences, as TRL's GKD names them (D(teacher, student) at each position):

    forward   KL(teacher || student): the student covers what the teacher would write
    reverse   KL(student || teacher): the student keeps to what the teacher finds likely
    jsd       generalised Jensen-Shannon with `beta` in (0, 1): with M = beta * teacher +
              (1 - beta) * student, beta * KL(teacher || M) + (1 - beta) * KL(student || M);
              beta -> 0 behaves like forward KL, beta -> 1 like reverse KL (TRL's GKD uses the
              two KLs at the end points, and so does `divergence` for beta = 0 or 1)
"""

from __future__ import annotations

import math

KINDS = ("forward", "reverse", "jsd")


def _log1mexp(x):
    """log(1 - exp(x)) for x <= 0, stable at both ends."""
    import torch

    x = x.clamp(max=-1e-12)
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def bucketed(student_logits, teacher_ids, teacher_logprobs, teacher_rest=None):
    """(student, teacher) log-probabilities over the K + 1 outcomes of each position.

    student_logits: [N, V]; teacher_ids: [N, K] (long); teacher_logprobs: [N, K];
    teacher_rest: [N], the log-probability of every other token, as the teacher's scoring
    stores it (exact where the top-k holds nearly all the mass; without it, it is derived from
    the top-k, which float32 cannot resolve below about 1e-7). Returns two [N, K + 1] tensors,
    the last column the rest bucket. The student's rest is computed from its other logits,
    exactly."""
    import torch

    logits = student_logits.float()
    total = torch.logsumexp(logits, dim=-1, keepdim=True)
    student_k = logits.gather(-1, teacher_ids) - total
    others = logits.scatter(-1, teacher_ids, float("-inf"))
    student_rest = torch.logsumexp(others, dim=-1, keepdim=True) - total
    teacher_k = teacher_logprobs.float()
    if teacher_rest is None:  # at least float32's resolution, 1e-7: never an empty bucket
        rest = _log1mexp(torch.logsumexp(teacher_k, dim=-1, keepdim=True).clamp(
            max=math.log1p(-1e-7)))
    else:
        rest = teacher_rest.float().unsqueeze(-1)
    return (torch.cat([student_k, student_rest], dim=-1), torch.cat([teacher_k, rest], dim=-1))


def _kl(log_p, log_q):
    """KL(p || q) per row, from log-probabilities."""
    import torch

    p = log_p.exp()
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(-1)


def divergence(student_logits, teacher_ids, teacher_logprobs, kind: str = "forward",
               beta: float = 0.5, teacher_rest=None):
    """The per-position divergence [N] between teacher and student (see the module)."""
    import torch

    if kind not in KINDS:
        raise ValueError(f"unknown divergence {kind!r} (expected: {', '.join(KINDS)})")
    student, teacher = bucketed(student_logits, teacher_ids, teacher_logprobs, teacher_rest)
    if kind == "forward" or (kind == "jsd" and beta == 0):
        return _kl(teacher, student)
    if kind == "reverse" or (kind == "jsd" and beta == 1):
        return _kl(student, teacher)
    if not 0 < beta < 1:
        raise ValueError(f"beta must be within [0, 1], got {beta}")
    mixture = torch.logsumexp(torch.stack([teacher + math.log(beta),
                                           student + math.log(1 - beta)]), dim=0)
    return beta * _kl(teacher, mixture) + (1 - beta) * _kl(student, mixture)


def first_difference(teacher_tokens: list[str], student_tokens: list[str]) -> tuple[int, str,
                                                                                    str] | None:
    """Where two vocabularies part over their shared size: (id, teacher's, student's), or None
    when every shared id names the same token. Larger models pad their embedding tables with
    extra rows; only the ids both tokenizers define are compared."""
    for i, (a, b) in enumerate(zip(teacher_tokens, student_tokens, strict=False)):
        if a != b:
            return i, a, b
    return None
