"""A sweep execution's tracking: its journal and what sends the journal to the store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from sedsweep.journal import JOURNAL_DIR, PARENT, Drainer, DrainerProcess, Journal, Notify
from sedsweep.sweep.state import SweepState

TrackingMode = Literal["async", "inline", "offline"]
"""async: a background thread sends the journal (the default); offline: nothing is sent (a
later `sedsweep sync` does); inline: each event is sent from the thread that journals it, as
trackers without a journal do (kept to measure what the journal saves: bench_tracking.py)."""


DRAIN_TIMEOUT_S = 120.0


def tracking_environment() -> None:
    """MLflow client defaults for a driver with a journal: a request fails within about a
    minute instead of MLflow's default of retrying for minutes (the journal keeps the events and
    the drainer retries on its own schedule). A user's own settings win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


class Tracker:
    """A sweep execution's journal and what sends it to the tracking store: a drainer in a
    child process (async), the journaling thread itself (inline), or nothing (offline)."""

    def __init__(self, state: SweepState, directory: Path, mode: TrackingMode, notify: Notify):
        self.state, self.notify = state, notify
        self.mode: TrackingMode = "offline" if state.offline else mode
        self.journal = Journal.at(directory / JOURNAL_DIR)
        self.drainer = Drainer(
            directory / JOURNAL_DIR, state.tracking_uri, execution=state.execution, notify=notify
        )
        self.process = DrainerProcess(directory / JOURNAL_DIR, state.tracking_uri, state.execution)
        self.phases: dict[str, float] = {}  # seconds of the fit, the final drain, the tables

    def start(self) -> None:
        if self.mode == "async":
            self.process.start()
        elif self.mode == "inline":
            self.journal.after_append = self.drainer.drain

    def settle(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the store to acknowledge every event; True when it has."""
        if self.mode == "offline":
            return False
        if self.mode == "inline":
            try:
                self.drainer.drain()
            except Exception:  # the store is away: the journal keeps the events
                return False
            return True
        return self.process.wait(self.journal.seq, timeout)

    def stop(self) -> None:
        self.process.stop()
        self.journal.after_append = None

    def pending(self) -> int:
        """Events journaled that the store has not acknowledged (as its ack file says)."""
        return max(self.journal.seq - self.process.acknowledged(), 0)

    def record_ids(self) -> None:
        """Copy the store's ids of the experiment and parent run into the sweep state."""
        ack = self.drainer.ack
        parent = ack.runs.get(PARENT)
        if ack.experiment_id and parent and not self.state.parent_run_id:
            self.state.experiment_id, self.state.parent_run_id = ack.experiment_id, parent
            self.state.save()

    def close_open_children(self, status: str) -> None:
        """Mark every child still RUNNING in the journal as `status` (an interrupted sweep)."""
        for key, known in list(self.journal.keys.items()):
            if key != PARENT and known.created and known.status == "RUNNING":
                self.journal.status(key, status)

    def timings(self) -> dict[str, float]:
        """Time the controller spent per result, and the lag until the store had it (s)."""
        import numpy as np

        lags = self.process.lags() if self.mode == "async" else self.drainer.lags
        out: dict[str, float] = dict(self.phases)
        for name, values in (("callback", self.journal.result_seconds), ("lag", lags)):
            if values:
                out[f"{name}_p50_s"] = float(np.percentile(values, 50))
                out[f"{name}_p99_s"] = float(np.percentile(values, 99))
                out[f"{name}_n"] = float(len(values))
        return out
