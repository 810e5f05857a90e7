"""Run only the collect stage of a `localdistill run` configuration, into a run directory.

    LOCALDISTILL_DATA=../shared/data .venv/bin/python scripts/collect_from_config.py \
        examples/reproduce_cpu.toml runs/reproduce-demo-collect --reuse docs/results/answers

With the kept answers this rebuilds the 0.5B pair's collect run (attempts, executions, teacher
answers, refinements, data sets) in under a minute and without asking a model: the source that
`localdistill probe --from` needs on a new machine. `run` itself would go on to train and evaluate.
"""

from __future__ import annotations

import argparse

from localdistill.collect import collect
from localdistill.experiment import load_config
from localdistill.rundir import RunDir
from localdistill.tasks import load_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("run")
    parser.add_argument("--reuse", action="append", default=[],
                        help="run directories whose answers to the same requests are taken")
    args = parser.parse_args()
    config = load_config(args.config)
    spec = ",".join(config.loop.tasks)
    with RunDir(args.run, reuse=args.reuse) as run:
        for report in collect(load_tasks(spec), config.collect, run, spec):
            print(f"{report.stage}: {report.counts} (model calls made now: {report.new_requests})")


if __name__ == "__main__":
    main()
