"""One execution of a sweep (a new one, or one resumed) as one explicit object.

The runner builds an `Execution` and runs Tune's `fit()` inside `running(execution)`. Tune
pickles its callbacks with the experiment and unpickles them in whichever driver resumes it,
so a callback cannot carry the live objects of the execution now running (the journal open
in this process, the progress line); it asks `current()` for them instead. Outside `fit()`
(a callback used on its own, as in tests) there is none, and the callback falls back to what
it was built with.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sedsweep.features import FeatureSet
from sedsweep.progress import Progress
from sedsweep.sweep.spec import SweepPlan
from sedsweep.sweep.state import SweepState
from sedsweep.sweep.tracker import Tracker

if TYPE_CHECKING:
    from sedsweep.sweep.outcome import OnFinish


@dataclass
class Execution:
    """What `runner._fit` runs: the plan, its state file, its tracking and its features."""

    plan: SweepPlan
    state: SweepState
    tracker: Tracker
    features: dict[str, FeatureSet]
    address: str | None  # --address (None: a new local Ray)
    resume: bool  # Tuner.restore of `state.path` instead of a new Tuner
    on_finish: OnFinish | None
    drain_timeout: float
    progress: Progress | None = field(default=None, repr=False)  # set while `fit()` runs


_current: Execution | None = None


@contextmanager
def running(execution: Execution) -> Iterator[Execution]:
    """`execution` is the one `current()` returns while the block runs, with a progress line
    of its trials ended (Ray Tune's own progress table is off)."""
    global _current
    execution.progress = Progress(execution.plan.n_trials, "trials ended", "trial")
    _current = execution
    try:
        yield execution
    finally:
        _current = None
        execution.progress.close()
        execution.progress = None


def current() -> Execution | None:
    """The execution whose `fit()` runs in this process, if any."""
    return _current
