"""The report's plots: pass@1 per model with its interval, and each paired difference with its
interval (which shows what pairing can tell and overlapping bars hide)."""

from __future__ import annotations

import math
from pathlib import Path

from localdistill.stages.report.claims import SIGNIFICANT, Comparison
from localdistill.stages.report.entries import Entry, short


def plot_differences(comparisons: list[Comparison], out: Path) -> Path | None:
    """Each paired difference with its 95% interval, one panel per benchmark: what pairing over
    tasks can tell, which two models' own intervals hide."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    unique_ = list({(c.benchmark, c.step, c.a, c.b): c for c in comparisons}.values())
    if not unique_:
        return None
    benchmarks = list(dict.fromkeys(c.benchmark for c in unique_))
    tallest = max(sum(c.benchmark == b for c in unique_) for b in benchmarks)
    figure, axes = pyplot.subplots(1, len(benchmarks), squeeze=False,
                                   figsize=(6.5 * len(benchmarks), 1.2 + 0.32 * tallest))
    for panel, benchmark in zip(axes[0], benchmarks, strict=True):
        group = [c for c in unique_ if c.benchmark == benchmark][::-1]  # first on top
        ys = range(len(group))
        values = [100 * c.difference for c in group]
        halves = [0.0 if math.isnan(c.half_width) else 100 * c.half_width for c in group]
        colours = ["tab:green" if c.p_value < SIGNIFICANT and c.a_better > c.b_better else
                   "tab:red" if c.p_value < SIGNIFICANT and c.a_better < c.b_better else "0.4"
                   for c in group]
        for y, value, half, colour in zip(ys, values, halves, colours, strict=True):
            panel.errorbar([value], [y], xerr=[[half], [half]], fmt="o", color=colour,
                           capsize=3)
        panel.axvline(0, color="0.2", linewidth=1)
        panel.set_yticks(list(ys), [f"{c.a} - {c.b}, step {c.step}" for c in group],
                         fontsize=8)
        panel.set_xlabel("paired difference in pass@1 (points), 95% interval")
        panel.set_title(f"{short(benchmark)}: a - b over the same tasks\n(green / red: "
                        f"a better / worse at p < {SIGNIFICANT}, sign test)", fontsize=10)
        panel.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return _save(figure, out / "paired_differences.png", pyplot)


# --- where a model wins and loses against the base student --------------------------------------


def plot(entries: list[Entry], out: Path) -> list[Path]:
    """The two figures people look at first; one panel per benchmark."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.ticker import MaxNLocator

    out.mkdir(parents=True, exist_ok=True)
    benchmarks = sorted({e.benchmark for e in entries})
    written = []

    widest = max(sum(e.benchmark == b for e in entries) for b in benchmarks)
    figure, axes = pyplot.subplots(1, len(benchmarks), squeeze=False,
                                   figsize=(max(6.0, 1.6 * widest) * len(benchmarks), 4.5))
    for panel, benchmark in zip(axes[0], benchmarks, strict=True):
        group = [e for e in entries if e.benchmark == benchmark]
        steps = max(e.steps for e in group)
        width = 0.8 / (steps + 1)
        for step in range(steps + 1):
            # a run evaluated with fewer steps has no bar there (not a bar at zero)
            shown = [(i, e) for i, e in enumerate(group) if step <= e.steps]
            xs = [i + (step - steps / 2) * width for i, _ in shown]
            values = [100 * e.pass_at_k[f"step {step}"]["pass@1"] for _, e in shown]
            bars = panel.bar(xs, values, width, label="one step" if step == 0 else
                             f"after {step} repair step{'s' if step > 1 else ''}")
            lows, highs = zip(*(_interval(e, step) for _, e in shown), strict=True)
            panel.errorbar(xs, values, yerr=[lows, highs], fmt="none", ecolor="0.3",
                           elinewidth=1, capsize=3)
            for bar_, value in zip(bars, values, strict=True):
                panel.annotate(f"{value:.1f}", (bar_.get_x() + bar_.get_width() / 2, value),
                               xytext=(0, 2), textcoords="offset points", ha="center",
                               va="bottom", fontsize=8,
                               bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none",
                                     "alpha": 0.8})
        panel.set_xticks(range(len(group)), [e.label for e in group])
        panel.set_ylabel("pass@1 (%)")
        panel.set_xlabel("student: base model or adapter trained on the data set")
        panel.set_title(f"{short(benchmark)}: pass@1 by method and repair step\n"
                        "(bars: 95% interval over tasks)", fontsize=11)
        panel.set_ylim(0, 118)  # the band above 100% holds the legend, clear of the bars
        panel.set_yticks(range(0, 101, 20))
        panel.grid(axis="y", alpha=0.3)
        panel.legend(fontsize=8, loc="upper center", ncol=steps + 1, frameon=False)
    figure.tight_layout()
    written.append(_save(figure, out / "pass_at_1_by_method.png", pyplot))

    figure, axes = pyplot.subplots(1, len(benchmarks), squeeze=False,
                                   figsize=(6.5 * len(benchmarks), 4.5))
    for panel, benchmark in zip(axes[0], benchmarks, strict=True):
        group = [e for e in entries if e.benchmark == benchmark]
        for e in group:
            size = e.examples or 0
            value = 100 * e.pass_at_k["step 0"]["pass@1"]
            low, high = _interval(e, 0)
            panel.errorbar([size], [value], yerr=[[low], [high]], fmt="o", capsize=3)
            panel.annotate(e.label, (size, value), textcoords="offset points", xytext=(6, 4),
                           fontsize=9)
        panel.set_xlabel("training examples (0: the base student)")
        panel.set_ylabel("pass@1, one step (%)")
        panel.set_title(f"{short(benchmark)}: pass@1 against training-set size\n"
                        "(bars: 95% interval over tasks)", fontsize=11)
        largest = max([e.examples or 0 for e in group] + [10])
        panel.set_xlim(-0.05 * largest, 1.15 * largest)
        panel.set_ylim(0, 105)
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
        panel.grid(alpha=0.3)
    figure.tight_layout()
    written.append(_save(figure, out / "pass_at_1_by_size.png", pyplot))
    return written


def _interval(e: Entry, step: int) -> tuple[float, float]:
    """The 95% interval of pass@1 (in points below and above the value), clipped to 0-100%."""
    if step > e.steps or math.isnan(e.pass1_interval[step]):
        return 0.0, 0.0
    value, half = 100 * e.pass_at_k[f"step {step}"]["pass@1"], 100 * e.pass1_interval[step]
    return min(half, value), min(half, 100 - value)


def _save(figure, path: Path, pyplot) -> Path:
    staging = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(staging, dpi=110)
    pyplot.close(figure)
    staging.replace(path)
    return path
