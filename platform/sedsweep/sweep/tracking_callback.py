"""Driver-side tracking of a sweep: one parent run, one child run per Tune trial, journaled.

Tune calls these hooks on its controller thread, so they never touch the network: each one
appends events to the sweep's tracking journal (`sedsweep.journal`) and returns, and the
journal's drainer writes them to MLflow in the background. Only the driver tracks (one writer;
workers need no MLflow access). What was journaled before (on a resumed sweep, by an earlier
driver) is read back from the journal, so a resumed trial continues its run and never logs an
epoch twice. The one state of its own: a running trial's journaled metrics, kept until it
ends so that its validity tags (`sedsweep.validity`) go with its end, drained during the sweep
instead of written one run at a time after it; a trial this driver did not see from its first
epoch is left to the end-of-sweep tagging (`report.tables.tag_validity`), which rewrites only
tags that differ from the record.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from sedsweep.config import flatten
from sedsweep.journal import DELETED, PARENT, Journal
from sedsweep.metrics import SELECTED_EPOCH, SELECTED_PREFIX
from sedsweep.progress import Progress
from sedsweep.sweep.execution import current
from sedsweep.sweep.seal import pickled_files, seal
from sedsweep.sweep.spec import (
    data_part,
    epoch_of,
    inactive_keys,
    trial_budget,
    trial_config,
)
from sedsweep.sweep.trainable import NODE_KEY, NONDETERMINISTIC_KEY, RESTORE_NOTE_KEY
from sedsweep.tracking import (
    ENDED_SHORT_TAG,
    EPOCHS_RUN_TAG,
    ERROR_ARTIFACT,
    ERROR_TAG,
    MAX_TAG_CHARS,
    NODE_TAG,
    NONDETERMINISTIC_TAG,
    OPTUNA_NUMBER_TAG,
    ORPHANED_TAG,
    PRUNED_RUNG_TAG,
    PRUNED_TAG,
    RECOVERED_ERROR_TAG,
    RESTORE_NOTE_TAG,
    STOPPED_EARLY_TAG,
    TRIAL_TAG,
    flat_params,
    run_name,
)
from sedsweep.validity import CHANCE_PREFIX, judge_trial

METRIC_PREFIXES = (
    "train/",
    "val/",
    "test/",
    "epoch",
    SELECTED_PREFIX,
    SELECTED_EPOCH,
    CHANCE_PREFIX,
)


def trial_run_name(number: int, overrides: dict[str, Any]) -> str:
    """A child run's name: its trial number and searched values, e.g.
    `t007 pooling=gap mtl.alpha=0.001`."""
    return run_name(f"t{number:03d}", overrides)


@dataclass
class _Seen:
    """What a trial journaled in this driver, as the store will hold it: each metric's latest
    value, the objective's per-epoch values, and whether its epochs ran on from the first."""

    metrics: dict[str, float] = field(default_factory=dict)
    curve: list[float] = field(default_factory=list)
    last: int = 0
    whole: bool = True


class TrackingCallback(tune.Callback):
    """Journals child runs, their params, per-epoch metrics, status and artifacts, and a
    trial's validity tags when it ends (with `objective`, the sweep's, and its `maximise`)."""

    def __init__(
        self,
        journal_dir: str,
        *,
        method: str,
        base_config: dict[str, Any],
        epochs: int,
        tags: dict[str, str],
        when: dict[str, dict[str, Any]] | None = None,
        objective: str | None = None,
        maximise: bool | None = None,
    ) -> None:
        self.journal_dir = journal_dir
        self.method = method
        self.base_config = base_config
        self.epochs = epochs
        self.tags = tags
        self.when = when or {}  # conditional keys: not logged where they do not act
        self.objective = objective
        self.maximise = maximise
        self._seen: dict[str, _Seen] = {}
        self._journal: Journal | None = None
        self._reconciled = False
        self._stop_decided: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks with the experiment: keep the path, not the open file
        (and reconcile again in the next driver)."""
        return {
            **self.__dict__, "_journal": None, "_reconciled": False, "_stop_decided": set(),
            "_seen": {},
        }  # fmt: skip

    def __setstate__(self, state: dict[str, Any]) -> None:
        # defaults for a callback pickled before `when` and the validity tags existed
        defaults = {"when": {}, "objective": None, "maximise": None}
        self.__dict__.update({"_stop_decided": set(), "_seen": {}, **defaults, **state})

    @property
    def journal(self) -> Journal:
        """The journal of the execution now running (shared with the runner and its drainer):
        a callback Tune restores from a copied or moved sweep directory still holds the path
        it was pickled with, and must not write into the original sweep."""
        if self._journal is None:
            running = current()
            self._journal = running.tracker.journal if running else Journal.at(self.journal_dir)
        return self._journal

    def open(self, trial: Any) -> str:
        """The trial's run key: created on first sight, opened again when a sweep resumes."""
        key = trial.trial_id
        state = self.journal.state(key)
        if not state.created:
            overrides = trial.config["overrides"]
            number = _number(trial)
            self.journal.create(
                key,
                trial_run_name(number, overrides),
                {**self.tags, TRIAL_TAG: key, OPTUNA_NUMBER_TAG: str(number)},
                parent=PARENT,
            )
            full = trial_config(self.base_config, overrides, self.epochs)
            params = flat_params({"method": self.method, **full, **data_part(overrides)})
            for inactive in inactive_keys({**flatten(full), **overrides}, self.when):
                params.pop(inactive, None)  # a key that does not act is not a parameter
            self.journal.params(key, params)
        elif state.status != "RUNNING":
            self.journal.status(key, "RUNNING")
        return key

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        """Before this driver's first step: reconcile the journal with the trials Tune knows."""
        if not self._reconciled:
            self._reconciled = True
            self.reconcile({t.trial_id for t in trials})
            progress = _progress_line()
            if progress is not None:  # trials an earlier execution ended
                progress.advance(steps=sum(t.status == "TERMINATED" for t in trials))

    def reconcile(self, known: set[str]) -> list[str]:
        """Delete the child runs of trials that Tune does not know (returns their keys).

        A trial the killed driver created after Ray Tune's last experiment snapshot is in the
        journal (and the store) but not in the experiment Tune restores, nor in the searcher
        state saved with it: the search asks for it again, and it runs under a new trial id.
        Its first run would stay RUNNING forever beside the new one, so it is tagged with
        the reason and deleted from the record: one trial of the search, one child run.
        """
        orphans = {
            key: state.status
            for key, state in self.journal.keys.items()
            if key != PARENT and state.created and state.status != DELETED and key not in known
        }
        for key, status in orphans.items():
            self.journal.tags(key, {ORPHANED_TAG: "started after the killed driver's last "
                                    "snapshot; runs again as a new trial"})  # fmt: skip
            if status == "RUNNING":
                self.journal.status(key, "KILLED")
            self.journal.delete(key)
        if orphans:
            print(
                f"resume: {len(orphans)} trial run(s) the killed driver started after its "
                "last snapshot run again as new trials; their first runs are deleted from "
                "the record (tag sweep.orphaned)",
                file=sys.stderr,
                flush=True,
            )
        return list(orphans)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.open(trial)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        """Journal the epoch's metrics with step = epoch (an epoch journaled before is skipped)."""
        started = time.perf_counter()
        key = self.open(trial)
        step = epoch_of(result)
        state = self.journal.state(key)
        if step > state.last_step:
            metrics = {
                k: float(v)
                for k, v in result.items()
                if k.startswith(METRIC_PREFIXES) and isinstance(v, int | float)
            }
            self.journal.metrics(key, metrics, step)
            if self.objective is not None:  # kept only for the validity tags
                self._saw(key, metrics, step)
        if result.get(NONDETERMINISTIC_KEY):
            self.journal.tags(key, {NONDETERMINISTIC_TAG: str(result[NONDETERMINISTIC_KEY])})
        if result.get(NODE_KEY) and NODE_TAG not in state.tags:
            self.journal.tags(key, {NODE_TAG: str(result[NODE_KEY])})
        note = result.get(RESTORE_NOTE_KEY)
        if isinstance(note, str) and note:
            self.journal.tags(key, {RESTORE_NOTE_TAG: note[:MAX_TAG_CHARS]})
            _warn(trial, note)
        if result.get("done"):  # Tune marks the result a scheduler (or stopper) ends the trial on
            self._stop_decided.add(trial.trial_id)
        self.journal.result_seconds.append(time.perf_counter() - started)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """FINISHED after the full budget; FINISHED with the pruned tags (`PRUNED_TAG`, the
        epoch it reached) when the scheduler stopped it; FAILED when it ended short with no
        stop decision (its trainable returned early): a trial cut short by nobody's decision
        is neither finished nor stopped early."""
        key = self.open(trial)
        self._recovered(key)
        done = epoch_of(trial.last_result)
        budget = trial_budget(trial.config["overrides"], self.epochs)
        seen = self._seen.pop(key, None)
        if done >= budget:  # its figures, if it gets any, come at the end (figures.py)
            self._tag_validity(key, seen, done, completed=True)
            self.journal.status(key, "FINISHED")
            self._progress(trial, f"finished ({done} epochs)")
        elif trial.trial_id in self._stop_decided or trial.status == "PAUSED":
            # a scheduler stops a paused trial (HyperBand, synchronous halving) with no result
            reached = str(done)
            self.journal.tags(
                key,
                {STOPPED_EARLY_TAG: "true", PRUNED_TAG: "true", PRUNED_RUNG_TAG: reached,
                 EPOCHS_RUN_TAG: reached},
            )  # fmt: skip
            self._tag_validity(key, seen, done, completed=False)
            self.journal.status(key, "FINISHED")
            self._progress(trial, f"stopped early by the scheduler after epoch {done}")
        else:
            why = f"ended after epoch {done} of {budget} with no stop decision"
            _warn(trial, why)
            self.journal.tags(
                key, {ERROR_TAG: why, ENDED_SHORT_TAG: "true", EPOCHS_RUN_TAG: str(done)}
            )
            self.journal.status(key, "FAILED")
            self._progress(trial, f"ended after epoch {done} with no stop decision (FAILED)")

    def _saw(self, key: str, metrics: dict[str, float], step: int) -> None:
        seen = self._seen.setdefault(key, _Seen())
        seen.metrics.update(metrics)
        if self.objective in metrics:
            seen.curve.append(metrics[self.objective])
        seen.whole &= step == seen.last + 1
        seen.last = step

    def _tag_validity(self, key: str, seen: _Seen | None, done: int, *, completed: bool) -> None:
        """The ended trial's validity tags, judged as the end-of-sweep tagging judges its
        record (`SweepRuns.validity`): only when this driver journaled its epochs 1 to `done`,
        so that what it holds is the record."""
        if self.objective is None or seen is None or not seen.whole or seen.last != done:
            return
        verdict = judge_trial(
            seen.metrics, self.objective, maximise=self.maximise, completed=completed,
            curve=lambda: seen.curve,
        )  # fmt: skip
        self.journal.tags(key, verdict.tags(MAX_TAG_CHARS))

    def _recovered(self, key: str) -> None:
        """A trial that errored (or ended short) in an earlier execution and ran to an end
        after a resume: its error tags and traceback go (the error's text is kept as
        sweep.recovered_error)."""
        state = self.journal.state(key)
        if ERROR_TAG in state.tags:
            self.journal.tags(key, {RECOVERED_ERROR_TAG: state.tags[ERROR_TAG]})
            self.journal.untag(key, [ERROR_TAG, ENDED_SHORT_TAG])
            self.journal.remove_artifact(key, ERROR_ARTIFACT)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """FAILED, with the error's last line as a tag and the full traceback as an artifact."""
        key = self.open(trial)
        self._seen.pop(key, None)
        text = _error_text(trial)
        last = text.strip().splitlines()[-1] if text.strip() else "unknown error"
        self.journal.tags(key, {ERROR_TAG: last[:MAX_TAG_CHARS]})
        self.journal.text(key, text, ERROR_ARTIFACT)
        self.journal.status(key, "FAILED")
        self._progress(trial, f"errored: {last[:200]}")

    def _progress(self, trial: Any, what: str) -> None:
        """One line per ended trial when the runner shows progress."""
        progress = _progress_line()
        if progress is not None:
            progress.advance(f"trial t{_number(trial):03d} {what}")


def _progress_line() -> Progress | None:
    """The progress line of the execution now running (a line per trial that ends, under a
    bar of trials ended on a terminal), if any."""
    running = current()
    return running.progress if running else None


def _number(trial: Any) -> int:
    """A Tune trial's Optuna trial number (how runs and messages name it: t007)."""
    return int(trial.config["optuna_trial"])


def _warn(trial: Any, text: str) -> None:
    """A one-line warning about a trial on stderr."""
    print(f"warning: trial t{_number(trial):03d}: {text}", file=sys.stderr, flush=True)


def _error_text(trial: Any) -> str:
    """The trial's error with traceback (Tune's error file), or the pickled exception."""
    path = trial.error_file
    if path and Path(path).exists():
        return Path(path).read_text(errors="replace")
    error = trial.get_pickled_error()
    if error is None:
        return "trial failed without an error record"
    return "".join(traceback.format_exception(error))


class SealCallback(tune.Callback):
    """Seals each Tune snapshot as it is taken: Tune asks callbacks for their state after it
    wrote the snapshot into its staging directory and before it uploads it (`sweep.seal`).
    Keeps no state of its own, so Tune writes no callback-state pickle."""

    def __init__(self) -> None:
        self._trials: list = []

    def __getstate__(self) -> dict[str, Any]:
        return {}  # pickled into tuner.pkl: no paths (a moved sweep), no key

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._trials = []

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        # Tune's own list, which it appends new trials to: the first snapshot comes in the
        # first step, after that step's trials were added
        self._trials = trials

    def get_state(self) -> None:
        if self._trials:
            storage = self._trials[0].storage
            staged = Path(storage.experiment_driver_staging_path)
            seal(Path(storage.experiment_fs_path), pickled_files(staged))
        return None
