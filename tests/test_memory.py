"""Each stage's table and manifest line carry the memory the stage itself used (memory.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# One process runs two stages: the first touches 400 MiB and frees it, the second touches none.
# Run apart from the test process, whose own peak (pytest, earlier tests) would hide the first.
SCRIPT = """
import sys
from localdistill import manifest
from localdistill.rundir import RunDir

run = RunDir(sys.argv[1])
with manifest.stage(run, "big") as report:
    block = bytearray(400 * 2**20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page: resident, not just reserved
    del block
    report.finish()
    manifest.record(run, report=report)
with manifest.stage(run, "small") as report:
    report.finish()
    manifest.record(run, report=report)
"""


def test_a_stage_reports_its_own_peak_memory(tmp_path):
    subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "run")], check=True)
    saved = json.loads((tmp_path / "run" / "manifest.json").read_text())
    big, small = saved["stages"]["big"], saved["stages"]["small"]
    assert big["peak_memory_gib"] >= 400 / 1024
    assert [h["peak_memory_gib"] for h in saved["history"]] == [
        big["peak_memory_gib"], small["peak_memory_gib"]]
    if not _resettable():
        pytest.skip("this system cannot reset a process's peak (/proc/self/clear_refs)")
    assert small["peak_memory_gib"] < big["peak_memory_gib"] - 0.3  # the second stage's own


def _resettable() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True
