"""Shared fixtures: a hand-built tiny corpus (independent of the generators) and a private cache."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

SR = 16000

# the sealing key that sweeps make on first use (`sweep.seal`) stays out of the user's ~/.config;
# one per user, shared by xdist workers and the `sedsweep` processes tests start
os.environ.setdefault(
    "SEDSWEEP_SEAL_KEY", str(Path(tempfile.gettempdir()) / f"sedsweep-tests-{os.getuid()}/seal.key")
)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny nets gain nothing from intra-op threads; on a busy 2-core machine they lose 10×+.
    Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _private_feature_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """Never touch the user's ~/.cache during tests."""
    monkeypatch.setenv("SEDSWEEP_CACHE_DIR", str(tmp_path_factory.mktemp("feature-cache")))


def tone(freq: float, seconds: float, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    """A sine tone."""
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def make_corpus(tmp_path: Path) -> Callable[..., Path]:
    """`write_hand_corpus` into the test's temporary directory."""

    def make(name: str = "hand", n: int = 6, seconds: float = 2.0, sr: int = SR) -> Path:
        return write_hand_corpus(tmp_path, name, n, seconds, sr)

    return make


def write_hand_corpus(
    parent: Path, name: str = "hand", n: int = 6, seconds: float = 2.0, sr: int = SR
) -> Path:
    """Write a small valid corpus by hand: clips.csv, events.tsv, corpus.json and WAVs.

    Clip i (of n) lasts `seconds`, has low noise, and class 'a' (a 1 kHz tone) from 0.5 to 1.0 s;
    odd clips also have 'b' (3 kHz) from 1.2 to 1.6 s; clip 0 is a negative (no events).
    Folds alternate 1/2; the last clip is unverified.
    """
    root = parent / name
    (root / "audio").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["path,labels,fold,verified,duration_s"]
    events = ["filename\tonset\toffset\tevent_label"]
    for i in range(n):
        y = rng.normal(0, 0.01, int(seconds * sr)).astype(np.float32)
        labels = []
        if i > 0:
            y[int(0.5 * sr) : int(1.0 * sr)] += tone(1000, 0.5, sr)
            labels.append("a")
            events.append(f"audio/c{i}.wav\t0.5\t1.0\ta")
        if i % 2 == 1:
            y[int(1.2 * sr) : int(1.6 * sr)] += tone(3000, 0.4, sr)
            labels.append("b")
            events.append(f"audio/c{i}.wav\t1.2\t1.6\tb")
        sf.write(root / "audio" / f"c{i}.wav", y, sr)
        verified = 0 if i == n - 1 else 1
        rows.append(f"audio/c{i}.wav,{';'.join(labels)},{1 + i % 2},{verified},{seconds}")
    (root / "clips.csv").write_text("\n".join(rows) + "\n")
    (root / "events.tsv").write_text("\n".join(events) + "\n")
    meta = {"name": name, "classes": ["a", "b"], "sample_rate": sr}
    (root / "corpus.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="session")
def _ray_of_the_run() -> Iterator[None]:
    """Shuts down, at the end of the run, the local Ray `local_ray` keeps."""
    yield
    import ray

    ray.shutdown()


def _ensure_local_ray() -> None:
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)


@pytest.fixture(scope="module")
def local_ray(_ray_of_the_run: None) -> None:
    """A local Ray (2 CPUs) shared by every in-process sweep test of the run (of the worker,
    under xdist) that needs no cluster of its own: started by the first module that asks, kept
    for the next. A test that needs its own cluster (or none) shuts it down, and the next
    module that asks starts it again."""
    _ensure_local_ray()


@pytest.fixture(scope="session")
def quickstart_sweep(_ray_of_the_run: None, tmp_path_factory: pytest.TempPathFactory):
    """The README's quickstart as it is (TPE + ASHA, 8 trials, 6 epochs, its tables logged),
    run once for the tests that read its record: (work directory, plan, outcome). Tests that
    add to the work directory do so under other experiment names, or (`best`'s re-training)
    as a child run of the parent without a trial id."""
    from sedsweep.report.tables import log_sweep_tables
    from sedsweep.sweep.runner import run_sweep
    from sedsweep.sweep.spec import load_sweep

    _ensure_local_ray()
    workdir = tmp_path_factory.mktemp("quickstart")
    plan = load_sweep(Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml")
    return workdir, plan, run_sweep(plan, workdir=workdir, on_finish=log_sweep_tables)


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster (tests/servers.py) for the test run (each test that
    needs a store makes its own database and user in it), stopped and deleted at the end."""
    from tests.servers import Postgres

    pg = Postgres.start()
    yield pg
    pg.stop()


# -- running the suite on several workers (pytest-xdist: `-n 2`) ----------------------------
# A module is one unit of work (its module-scoped engines start once, on one worker). Modules
# that kill drivers or time their signals are one unit, as are those that start PostgreSQL and
# `mlflow server` and take them through outages: at most one of each kind runs at a time,
# beside lighter work on the other worker; the modules that read the session's quickstart
# sweep are one unit, so that it runs once. (xdist's own `--dist loadgroup` cannot do this
# under pytest 9: it regroups tests by rewriting a node id attribute pytest no longer reads.)
SERIAL_GROUPS = {
    "kills": ("chaos/test_kill.py", "chaos/test_debris.py", "test_signals.py", "test_slurm.py"),
    "servers": ("test_tracking_outage.py", "test_mlflow_server.py"),
    "quickstart": ("test_sweep.py", "test_report.py", "test_seal.py"),  # `quickstart_sweep`
}


def work_unit(nodeid: str) -> str:
    """The unit of work a test belongs to: its module's group, else its module."""
    module = nodeid.split("::", 1)[0].removeprefix("tests/")
    return next((g for g, files in SERIAL_GROUPS.items() if module in files), module)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    # units in collection order, not by test count: the longest, the kill modules, are
    # collected first (tests/chaos) and so started first
    config.option.loadscopereorder = False
    return ByWorkUnit(config, log)
