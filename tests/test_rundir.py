"""Run directories: resumable appends, torn lines after a crash, one run at a time."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from localdistill.rundir import RunDir, RunDirError


def test_append_and_read_back(tmp_path):
    with RunDir(tmp_path / "run") as run:
        assert run.append("attempts", [{"key": "a", "v": 1}, {"key": "b", "v": 2}]) == 2
        assert [r["v"] for r in run.records("attempts")] == [1, 2]
        assert run.done_keys("attempts") == {"a", "b"}
        assert list(run.records("nothing-yet")) == []
        with pytest.raises(ValueError, match="needs a 'key'"):
            run.append("attempts", [{"v": 3}])


def test_a_torn_last_line_is_ignored_then_cut_off(tmp_path):
    with RunDir(tmp_path) as run:
        run.append("attempts", [{"key": "a"}])
    with open(tmp_path / "attempts.jsonl", "ab") as f:
        f.write(b'{"key": "b", "tru')  # what a crash mid-write leaves
    with RunDir(tmp_path) as run:
        assert run.done_keys("attempts") == {"a"}
        run.append("attempts", [{"key": "b"}])
        assert [r["key"] for r in run.records("attempts")] == ["a", "b"]
    assert (tmp_path / "attempts.jsonl").read_text().count("\n") == 2


def test_a_second_run_on_the_same_directory_is_refused(tmp_path):
    with RunDir(tmp_path):
        with pytest.raises(RunDirError, match=r"in use by another localdistill run \(pid \d+\)"):
            RunDir(tmp_path)
    RunDir(tmp_path).close()  # free again once the first one closed


def test_a_run_directory_from_another_version_is_refused(tmp_path):
    (tmp_path / "localdistill-run.json").write_text('{"format": 0}\n')
    with pytest.raises(RunDirError, match="another version of localdistill"):
        RunDir(tmp_path)


WRITER = """
import sys
from localdistill.rundir import RunDir
run = RunDir(sys.argv[1])
done = run.done_keys("items")
def items():
    for i in range(200000):
        if str(i) not in done:
            yield {"key": str(i), "payload": "x" * 200}
with run.appender("items", every=50) as out:
    for item in items():
        out.add(item)
"""


@pytest.mark.slow
def test_killed_with_sigkill_and_resumed_gives_every_record_once(tmp_path):
    written = []
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)])
        time.sleep(0.4)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        written.append((tmp_path / "items.jsonl").read_bytes().count(b"\n"))
    assert written[0] < 200000  # the first kill did land mid-run
    subprocess.run([sys.executable, "-c", WRITER, str(tmp_path)], check=True, timeout=120)
    keys = [json.loads(line)["key"] for line in (tmp_path / "items.jsonl").open()]
    assert len(keys) == 200000 and len(set(keys)) == 200000


def test_each_appended_record_reaches_the_os_at_once(tmp_path):
    """What kill -9 cannot lose: a record is in the file as soon as `add` returns."""
    with RunDir(tmp_path) as run, run.appender("cache/requests") as out:
        out.add({"key": "h1", "text": "x"})
        assert (tmp_path / "cache" / "requests.jsonl").read_text() == '{"key": "h1", "text": "x"}\n'
        out.add({"key": "h2"})
        assert [r["key"] for r in run.records("cache/requests")] == ["h1", "h2"]


def test_a_torn_tail_longer_than_a_block_is_cut_off(tmp_path):
    with RunDir(tmp_path) as run:
        run.append("cache/requests", [{"key": "a"}])
    with open(tmp_path / "cache" / "requests.jsonl", "ab") as f:
        f.write(b'{"key": "b", "text": "' + b"y" * 200_000)
    with RunDir(tmp_path) as run:
        run.append("cache/requests", [{"key": "c"}])
        assert [r["key"] for r in run.records("cache/requests")] == ["a", "c"]


def test_write_replaces_a_stage_output_whole(tmp_path):
    with RunDir(tmp_path) as run:
        run.write("attempts", [{"key": "a"}, {"key": "b"}])
        run.write("attempts", [{"key": "c"}])
        assert [r["key"] for r in run.records("attempts")] == ["c"]
        run.write_json("manifest", {"x": 1})
        assert run.read_json("manifest") == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_a_damaged_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with RunDir(tmp_path) as run, pytest.raises(RunDirError, match="manifest.json: not valid JSON"):
        run.read_json("manifest")


def test_a_new_run_directory_is_its_owners_alone(tmp_path):
    import stat

    (tmp_path / "shared").mkdir(mode=0o755)
    before = stat.S_IMODE((tmp_path / "shared").stat().st_mode)
    with RunDir(tmp_path / "shared" / "runs" / "one"):
        pass
    assert stat.S_IMODE((tmp_path / "shared" / "runs").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == before  # not ours to change
