"""The end of a sweep execution: what its trials came to (`SweepOutcome`), and the sequence
that closes the record: counts and the best value on the parent, the reproducibility record,
figures, the tables hook, the final drain and the parent's status."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sedsweep.journal import PARENT
from sedsweep.progress import phase
from sedsweep.sweep.record import RECORD_FILE, write_record
from sedsweep.sweep.spec import epoch_of
from sedsweep.tracking import (
    BEST_METRIC_PREFIX,
    ENDED_SHORT_TAG,
    STOPPED_EARLY_TAG,
    TRACE_TAG,
    all_finished,
    count_tag,
    run_url,
    ui_base,
)

if TYPE_CHECKING:
    from sedsweep.sweep.execution import Execution

TABLES_HOOK = "tables"


@dataclass
class SweepOutcome:
    """What a sweep execution ended with."""

    name: str
    path: Path
    parent_run_id: str
    tracking_uri: str
    expected: int
    counts: dict[str, int] = field(default_factory=dict)
    best: dict[str, Any] | None = None
    journal: Path | None = None  # the tracking journal's directory
    tracking_pending: int = 0  # journaled events the store has not acknowledged
    offline: bool = False
    ui_url: str | None = None  # the parent run in MLflow's UI, once it exists there
    tracking: dict[str, float] = field(default_factory=dict)  # timings (bench_tracking.py)
    trace_sha256: str | None = None  # the reproducibility record's trace (sweep/record.py)

    @property
    def finished(self) -> int:
        """Trials that ran to their end or were stopped by the scheduler."""
        return self.counts.get("completed", 0) + self.counts.get("stopped_early", 0)

    @property
    def complete(self) -> bool:
        """Every trial ran (to the end or stopped by the scheduler) and none errored."""
        return all_finished(self.finished, self.counts.get("errored", 0), self.expected)

    def summary(self) -> str:
        """One line for the terminal."""
        parts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.counts.items() if v)
        return f"sweep {self.name}: {parts or 'no trials'} of {self.expected} planned"

    def sync_hint(self) -> str | None:
        """What to say when the store does not hold the whole record yet, else None."""
        if not self.tracking_pending:
            return None
        where = "journaled (offline)" if self.offline else "not yet in the tracking store"
        return (
            f"tracking: {self.tracking_pending} events {where}; "
            f"send them with: sedsweep sync {self.path}"
        )


OnFinish = Callable[[SweepOutcome], None]
"""Called when a sweep's trials are done, before its parent run is marked finished."""


def finish(execution: Execution, results: Any) -> SweepOutcome:
    """Close the record of an execution whose `fit()` returned with Tune's `results`."""
    # Only the scheduler's decisions count as stopped early (the tracking callback tags them
    # when Tune completes the trial); a trial cut short any other way — Ctrl-C, SIGTERM, never
    # given resources — is interrupted: the sweep is incomplete and `resume` finishes it.
    plan, state, tracker = execution.plan, execution.state, execution.tracker
    features, on_finish = execution.features, execution.on_finish
    drain_timeout = execution.drain_timeout
    journal = tracker.journal
    counts = {"completed": 0, "stopped_early": 0, "interrupted": 0, "errored": 0, "missing": 0}
    primary = plan.spec.primary
    best = None
    for result in results:
        metrics = result.metrics or {}
        if result.error is not None:
            counts["errored"] += 1
        # a trial with no epoch reported is not completed and may have no config in its
        # result (Tune reads it from the last report): no budget to look up
        elif (done := epoch_of(metrics)) and done >= plan.budget(result.config["overrides"]):
            counts["completed"] += 1
            value = plan.objective_value(metrics)
            if value is not None and (
                best is None or (value > best[0] if primary.maximise else value < best[0])
            ):
                best = (value, result)
        elif STOPPED_EARLY_TAG in (tags := journal.state(str(metrics.get("trial_id"))).tags):
            counts["stopped_early"] += 1
        elif ENDED_SHORT_TAG in tags:  # ended short with no stop decision: a failed trial
            counts["errored"] += 1
        else:
            counts["interrupted"] += 1
    counts["missing"] = max(plan.n_trials - len(results), 0)
    outcome = SweepOutcome(
        name=plan.spec.name,
        path=Path(state.path),
        parent_run_id=state.parent_run_id,
        tracking_uri=state.tracking_uri,
        expected=plan.n_trials,
        counts=counts,
        journal=tracker.journal.directory,
        offline=state.offline,
    )
    if best is not None:  # the best completed trial: a cut-short one is no candidate
        value, result = best
        outcome.best = {  # Tune's best; the tables hook replaces it with the best trained one
            "config": result.config["overrides"], "metrics": {primary.metric: value},
            "checked": False,
        }  # fmt: skip
        # at step = trials completed so far: the history shows the best value as the sweep
        # grew, and an execution that completed nothing new (killed again) adds no point
        if counts["completed"] > journal.state(PARENT).last_step:
            journal.metrics(
                PARENT, {f"{BEST_METRIC_PREFIX}{primary.metric}": value}, counts["completed"]
            )
    journal.tags(PARENT, {count_tag(k): str(v) for k, v in counts.items()})
    record = write_record(plan, features, Path(state.path))
    if record is not None:
        outcome.trace_sha256 = record["trace_sha256"]
        journal.text(PARENT, json.dumps(record, indent=2) + "\n", RECORD_FILE)
        journal.tags(PARENT, {TRACE_TAG: record["trace_sha256"]})
    from sedsweep.sweep.figures import draw_figures  # Tune and torch: not at the runner's import

    started = time.perf_counter()
    with phase("drawing the figures of the best trials"):
        draw_figures(plan, features, journal, list(results))
    tracker.phases["figures_s"] = time.perf_counter() - started
    cut = counts["missing"] or counts["interrupted"]
    if cut:  # interrupted: trials still open were stopped with the driver
        tracker.close_open_children("KILLED")
    journal.hook(TABLES_HOOK)  # a replay (`sedsweep sync`) logs the tables at this point
    started = time.perf_counter()
    drained = tracker.settle(drain_timeout)
    tracker.phases["drain_s"] = time.perf_counter() - started
    if drained and on_finish is not None:
        started = time.perf_counter()
        with phase("writing the tables, claims and dashboard"):
            on_finish(outcome)
        tracker.phases["tables_s"] = time.perf_counter() - started
    if cut:
        journal.status(PARENT, "KILLED")
    else:
        journal.status(PARENT, "FINISHED" if outcome.complete else "FAILED")
    if drained:
        tracker.settle(min(drain_timeout, 30.0))
    tracker.stop()
    outcome.tracking_pending = tracker.pending()
    outcome.tracking = tracker.timings()
    if state.parent_run_id:
        outcome.ui_url = run_url(
            ui_base(state.tracking_uri), state.experiment_id, state.parent_run_id
        )
    return outcome
