"""The unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language Models Trained on
Code"): the probability that at least one of k samples drawn without replacement from n, of which
c are correct, passes."""

from __future__ import annotations

from collections.abc import Iterable
from math import comb


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k), exactly (integer arithmetic, no float cancellation)."""
    if not 0 <= c <= n:
        raise ValueError(f"pass@k: need 0 <= correct <= samples, got correct={c}, samples={n}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@k: need 1 <= k <= samples, got k={k}, samples={n}")
    return 1.0 - comb(n - c, k) / comb(n, k)


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """pass@k averaged over tasks, from (samples, correct) per task."""
    values = [pass_at_k(n, c, k) for n, c in counts]
    if not values:
        raise ValueError("pass@k of no tasks is undefined")
    return sum(values) / len(values)


def label(k: int) -> str:
    """pass@k's name in summaries and tables."""
    return f"pass@{k}"
