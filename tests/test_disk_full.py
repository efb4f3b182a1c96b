"""A full disk (issue 32): one line with the free space, the path and, for a sweep, the resume
command; the journal keeps only whole events, and the sweep resumes once space is freed.
Each test mounts a small tmpfs of its own (skipped where mounting is not allowed)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sedsweep.journal import Journal, Op, read_events
from tests.servers import CliProcess, wait_for_events
from tests.test_cli import run_cli

ROOT = Path(__file__).resolve().parents[1]


def mounted(parent: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted under `parent` for one test, unmounted after it."""
    mount = parent / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.fixture
def small_fs(tmp_path) -> Iterator[Path]:
    """4 MB: less than the smallest synthetic corpus."""
    yield from mounted(tmp_path, "4m")


@pytest.fixture
def sweep_fs(tmp_path) -> Iterator[Path]:
    """64 MB: room for a tiny null sweep, until it is filled."""
    yield from mounted(tmp_path, "64m")


def fill(directory: Path) -> Path:
    """Fill the file system of `directory` to the last byte; the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    return filler


def test_a_journal_append_on_a_full_disk_leaves_whole_events(small_fs):
    journal = Journal.at(small_fs / "tracking")
    journal.experiment("x")
    filler = fill(small_fs)
    failures = 0
    for step in range(200):  # some appends fit into the last page, then each one fails
        try:
            journal.metrics("t1", {"val/score": 0.5}, step)
        except OSError:
            failures += 1
    assert failures
    events = list(read_events(journal.path))
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert journal.path.read_bytes().endswith(b"\n")
    filler.unlink()
    journal.metrics("t1", {"val/score": 0.75}, 999)
    journal.close()
    events = list(read_events(journal.path))
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["op"] == Op.METRICS and events[-1]["step"] == 999


def test_writing_a_corpus_on_a_full_disk_is_one_line_and_leaves_nothing(small_fs):
    out = small_fs / "corpus"
    done = run_cli("data", "make", "lowres", "--scale", "small", "--out", str(out))
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        f"sedsweep: error: {out}: no space left on the device (4.0 MB free there)"
    ]
    assert os.listdir(small_fs) == []


@pytest.mark.slow
def test_a_sweep_that_fills_its_disk_stops_in_one_line_and_resumes(sweep_fs):
    """The disk fills while trials run: before, 614 lines with 16 tracebacks (MLflow's SQL
    errors, Tune's, the drainer's) and no resume command."""
    work = sweep_fs / "w"
    args = ["sweep", str(ROOT / "search_spaces" / "null_load.yaml"), "--scale", "tiny",
            "--workdir", str(work), "--set", "budget.trials=2", "--set", "budget.max_epochs=12",
            "--set", "fixed.sleep_s=0.5"]  # fmt: skip
    sweep = CliProcess(args, sweep_fs.parent / "sweep.log", cwd=ROOT)
    try:
        sweep.wait_for(r"MLflow parent run \w+ in ", 120)
        wait_for_events(work, "metrics", 2, sweep.proc)
        filler = fill(sweep_fs)
        code = sweep.finish(300)
    finally:
        sweep.cleanup()
    out = sweep.output
    assert code == 2, out[-3000:]
    assert "Traceback" not in out and "ERROR" not in out, out[-3000:]
    last = out.strip().splitlines()[-1]
    experiment = next((work / "ray").glob("null_load-*"))
    assert last.startswith("sedsweep: error: ") and "no space left on the device (" in last
    assert last.endswith(f"free some space, then resume with: sedsweep resume {experiment}")
    filler.unlink()
    again = CliProcess(["resume", str(experiment)], sweep_fs.parent / "resume.log", cwd=ROOT)
    assert again.finish(300) == 0, again.output[-3000:]
    assert "2 completed of 2 planned" in again.output
