"""Synchronous successive halving: the early stopping of a reproducible search.

ASHA (the default) decides at a rung from whichever trials happen to have reached it, so its
decisions, and the sampler's view of them, depend on timing. Here a rung is decided once for
each batch of trials (`search.batch_size`), when every trial of the batch still in the race
has reached it or ended: the best max(1, floor(m / reduction_factor)) go on (`rungs.halving`,
ties to the lower trial number). A trial that reaches a rung before its batch-mates is paused
(Tune keeps its checkpoint and frees its worker) and resumed, or stopped, by the decision.

The state (every trial's values at the rungs, the decisions: `rungs.HalvingRecord`) is kept by
the searcher (`OptunaPruningSearch.halving`), which Tune saves with each experiment snapshot as
JSON: a resumed sweep decides from the same record, and trials that were waiting at a rung
wait again. The scheduler reads the record through the searcher Tune restores it into.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from sedsweep.sweep.rungs import HalvingRecord
from sedsweep.sweep.spec import epoch_of, finite

if TYPE_CHECKING:
    from sedsweep.sweep.search import OptunaPruningSearch


class SynchronousHalving(TrialScheduler):
    """A Tune scheduler that applies the synchronous halving recorded by the searcher."""

    def __init__(self, search: OptunaPruningSearch, max_concurrent: int | None) -> None:
        super().__init__()
        self.search = search  # the same object Tune restores the searcher state into
        self.max_concurrent = max_concurrent
        self.by_number: dict[int, Trial] = {}

    @property
    def record(self) -> HalvingRecord:
        """The searcher's record (replaced in place when Tune restores the searcher)."""
        return self.search.halving

    @staticmethod
    def number(trial: Trial) -> int:
        return int(trial.config["optuna_trial"])

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        """Register the trial; a trial restored on resume that was waiting at a rung (or that
        the halving stopped there) is held as paused instead of started again."""
        number = self.number(trial)
        self.by_number[number] = trial
        if trial.status == Trial.PENDING and self.record.standing(number) != "run":
            trial.set_status(Trial.PAUSED)  # before Tune files it under its status
            self.record.paused.add(number)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        epoch, number = epoch_of(result), self.number(trial)
        if epoch not in self.record.rungs:
            # normally 'run'; a trial Tune restarted on its own (a retry after an error) past
            # a rung it waits at, or was stopped at, is held or stopped here
            standing = self.record.standing(number)
            if standing == "run":
                return TrialScheduler.CONTINUE
            if standing == "stop":
                return TrialScheduler.STOP
            self.record.paused.add(number)
            return TrialScheduler.PAUSE
        value = result.get(self.search.metric)
        verdict = self.record.at_rung(number, epoch, float(value) if finite(value) else None)
        self._apply(tune_controller, number)
        if verdict == "wait":
            self.record.paused.add(number)
            return TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE if verdict == "continue" else TrialScheduler.STOP

    def _apply(self, tune_controller: Any, number: int) -> None:
        """Stop the paused trials of `number`'s batch that a decision left behind (the paused
        ones it kept are started by `choose_trial_to_run`)."""
        for other in self.record.batch_of(number):
            trial = self.by_number.get(other)
            if other == number or trial is None:
                continue
            # a trial still saving its pause checkpoint is stopped once paused (below)
            if trial.status == Trial.PAUSED and self.record.standing(other) == "stop":
                tune_controller.stop_trial(trial)

    def _ended(self, tune_controller: Any, trial: Trial) -> None:
        number = self.number(trial)
        self.record.ended_trial(number)
        if self.record.decide(self.record.batch_of(number)[0]):
            self._apply(tune_controller, number)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        self._ended(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self._ended(tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._ended(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        """The lowest-numbered trial that may run: a pending one, or a paused one its rung
        kept (trials its rung stopped are stopped here, e.g. after a resume)."""
        trials = sorted(tune_controller.get_trials(), key=self.number)
        running = sum(t.status in (Trial.RUNNING, Trial.PENDING) for t in trials)
        for trial in trials:
            if trial.status not in (Trial.PENDING, Trial.PAUSED):
                continue
            standing = self.record.standing(self.number(trial))
            if standing == "stop" and trial.status == Trial.PAUSED:
                tune_controller.stop_trial(trial)
            elif standing == "run" and (
                trial.status == Trial.PENDING
                or self.max_concurrent is None
                or running < self.max_concurrent
            ):
                self.record.paused.discard(self.number(trial))
                return trial
        return None

    def debug_string(self) -> str:
        return f"synchronous successive halving over batches of {self.record.batch}"
