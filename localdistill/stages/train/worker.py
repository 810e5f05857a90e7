"""One process of a launched training (launch.py starts N of these): `train` on this rank.

Rank 0 shows the progress and writes OUT; every rank that fails prints one line starting with
launch.FAILED, which the launcher turns into the command's error.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    rank = int(os.environ.get("RANK", "0"))
    try:
        from rich.console import Console

        from localdistill.progress import Progress
        from localdistill.stages.train import train
        from localdistill.stages.train.config import TrainConfig

        job = json.loads(Path(argv[0]).read_text())
        config = TrainConfig(**job["config"])
        if rank == 0:
            with Progress(Console(stderr=True)) as progress:
                train(job["data_set"], job["student"], Path(argv[0]).parent, config, progress,
                      job["restart"])
        else:
            train(job["data_set"], job["student"], Path(argv[0]).parent, config, None,
                  job["restart"])
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - one line for the launcher, whatever went wrong
        from localdistill.stages.train.launch import FAILED

        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"{FAILED} {rank}: {message}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
