"""Optuna as a Ray Tune searcher that knows about early stopping.

Ray's stock OptunaSearch tells Optuna that a trial stopped early by ASHA *completed* with the
value it had at its last (low) epoch, which biases TPE towards configurations that look good
early. Here every epoch is reported to Optuna as an intermediate value, and a trial that ends
before the sweep's `max_epochs` without an error is told as PRUNED, so samplers see it as a
partial evaluation (TPE ranks pruned trials by their last intermediate value).

Grid sweeps enqueue every cell × replicate combination up front, so each runs exactly once.

The searcher's state (every Optuna trial with its parameters, distributions, values and
intermediate values; the trials in flight; the grid position) is saved as JSON, never as a
pickle: a file planted in the sweep's storage is data, and anything else is refused. On
restore the study is rebuilt with the same sampler and seed, the trials replayed into it in
their original numbers, and the sampler's random states (its own and its fallback sampler's,
as plain numbers) set back to where they were: without them a resumed sampler would start its
random sequence again and suggest the configurations of the sweep's first trials once more.

Every objective is read under its selected key (`best_val/...`: the value of the weights the
method delivers), the value tables and `sedsweep best` rank by. With several objectives (a
Pareto sweep) the study has one direction per objective and is told every value at the end;
Optuna takes no intermediate values then, and a trial stopped early on the scheduler's
metric is told as PRUNED.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
from optuna.trial import FrozenTrial, Trial, TrialState
from ray.tune.search import Searcher

from sedsweep.errors import UserError
from sedsweep.metrics import selected_key
from sedsweep.sweep.live_journal import mirror
from sedsweep.sweep.registry import make_sampler
from sedsweep.sweep.rungs import HalvingRecord
from sedsweep.sweep.spec import (
    SEED_KEYS,
    CategoricalParam,
    FloatParam,
    GridParam,
    IntParam,
    SweepPlan,
    condition_order,
    conditions,
    epoch_of,
    finite,
    is_active,
    rung_epochs,
    trial_budget,
    trial_seed,
)

optuna.logging.set_verbosity(logging.WARNING)


def trial_outcome(
    result: dict[str, Any] | None, error: bool, metrics: list[str], max_epochs: int
) -> str:
    """How a finished Tune trial reaches Optuna: 'fail', 'pruned' or 'complete'."""
    if error or not result or not all(finite(result.get(m)) for m in metrics):
        return "fail"
    if epoch_of(result) < max_epochs:
        return "pruned"
    return "complete"


def _identity(result: dict[str, Any]) -> tuple[int, Any]:
    """What tells one Tune result from another of the same trial: its step and Tune's running
    time (a replayed step after a restore has another time)."""
    return epoch_of(result), result.get("time_total_s")


class OptunaPruningSearch(Searcher):
    """Define-by-run Optuna search over a SweepPlan's space; early-stopped trials are PRUNED."""

    def __init__(self, plan: SweepPlan) -> None:
        s = plan.spec
        super().__init__(metric=selected_key(s.primary.metric), mode=s.primary.mode)
        self.objectives = [selected_key(o.metric) for o in s.objectives]
        self.multi = s.multi_objective
        self.max_epochs = plan.base_epochs  # a cell's own `epochs` overrides it (`budget`)
        # Trials in flight at once. Kept here, not by Tune's ConcurrencyLimiter: that wrapper
        # drops the completion of a trial it does not count as live, and a trial that errored
        # and runs again after a resume never is, so Optuna would never hear how it ended.
        self.max_concurrent = s.budget.max_concurrent
        self.space = {
            k: s.space[k] for k in condition_order(s.space) if not isinstance(s.space[k], GridParam)
        }
        self.when = conditions(s.space)
        self.study_name, self.algorithm, self.seed = s.name, s.search.algorithm, s.search.seed
        self.directions = ["maximize" if o.maximise else "minimize" for o in s.objectives]
        self.study = self._new_study()
        self.grid: dict[str, list[Any]] = {}
        self.cells: list[dict[str, Any]] = []
        if s.search.algorithm == "grid":
            self.cells = [
                {**cell, **rep} for cell in plan.grid_cells for rep in plan.replicate_cells
            ]
            for cell in self.cells:
                for key, value in cell.items():
                    choices = self.grid.setdefault(key, [])
                    if value not in choices:
                        choices.append(value)
                self.study.enqueue_trial(cell)
        self.asked = 0
        self.trials: dict[str, Trial] = {}
        self.last_step: dict[str, int] = {}
        self.failed: dict[str, int] = {}  # trials told FAIL, by Tune trial id
        self.passed: dict[str, tuple[int, Any]] = {}  # the last result Tune passed on, per trial
        # A reproducible search (`search.reproducible`): batches, synchronous halving, seeds.
        self.reproducible = s.search.reproducible
        self.sweep_seed = s.search.seed
        self.base_seed = plan.base.config.seed  # every trial's validation split
        self.seeded = "seed" not in {*s.space, *plan.grid_cells[0], *s.replicates}
        rungs = (
            [e for e in rung_epochs(s.scheduler, plan.epochs) if e < plan.epochs]
            if s.scheduler.type == "asha"
            else []
        )
        batch = s.search.batch
        if s.search.algorithm == "grid" and not rungs:
            # nothing a trial reports changes a grid's cells or ends a trial early: one batch
            # (no waiting between batches) gives the same sweep
            batch = max(plan.n_trials, 1)
        self.halving = HalvingRecord(
            batch, plan.n_trials, rungs, s.scheduler.reduction_factor, s.primary.maximise
        )
        self.queue: list[Trial] = []  # a reproducible batch's trials not yet handed to Tune

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Tune pickles the searcher with the experiment and `Tuner.restore` unpickles it
        before `restore` reads its JSON state: a searcher pickled by an older sedsweep gets
        each attribute added since as it behaved before it existed. (The one place that knows
        the older forms.)"""
        state = dict(state)
        state.pop("_live", None)  # before the live journal had a writer of its own
        state.setdefault("queue", [])  # before reproducible searches
        state.setdefault("reproducible", False)
        state.setdefault("max_concurrent", None)  # before the searcher limited concurrency
        state.setdefault("when", {})  # before conditional keys
        state.setdefault("multi", False)  # before Pareto sweeps: one objective
        state.setdefault("objectives", [state["_metric"]])
        if "halving" not in state:  # before the halving record had its own class
            state["halving"] = HalvingRecord(
                state.get("batch", 1), state.get("total", 0), state.get("rungs", []),
                state.get("reduction_factor", 2.0), state.get("_mode") == "max",
            )  # fmt: skip
        self.__dict__.update(state)

    def _mirror(self, event: str, *args: Any) -> None:
        """Tell the live Optuna journal (`live_journal`) what just happened to the study, when
        this searcher runs in a sweep's driver (queued: a thread writes it)."""
        mirror(self.study_name, self.directions, event, *args)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """Ask Optuna for the next trial: {'overrides': {dotted key: value}, 'optuna_trial': n}.

        A reproducible search asks a whole batch at once, and only when every trial of the
        batches before it has ended, then hands its trials out in number order."""
        if self.cells and self.asked >= len(self.cells) and not self.queue:
            return Searcher.FINISHED
        limit = self.max_concurrent  # None: unlimited
        if limit is not None and len(self.trials) - len(self.halving.paused) >= limit:
            return None  # ask again when a trial in flight has ended
        if self.reproducible:
            if not self.queue:
                if self.trials or self.asked >= self.halving.total:
                    return None  # the batch in flight decides what the next one is
                size = min(self.halving.batch, self.halving.total - self.asked)
                self.queue = [self._ask() for _ in range(size)]
            trial = self.queue.pop(0)
        else:
            trial = self._ask()
        self.trials[trial_id] = trial
        self._mirror("started", trial.number, dict(trial.params), dict(trial.distributions),
                     dt.datetime.now())  # fmt: skip
        return {"overrides": self.overrides(trial), "optuna_trial": trial.number}

    def _ask(self) -> Trial:
        """One new Optuna trial with every searched value suggested (a grid trial pops its
        enqueued cell: that cell's keys)."""
        trial = self.study.ask()
        for key in self.cells[self.asked] if self.cells else {}:
            trial.suggest_categorical(key, self.grid[key])
        self.asked += 1
        for key, param in self.space.items():
            if is_active(key, trial.params, self.when):  # define-by-run: modelled where it acts
                _suggest(trial, key, param)
        return trial

    def overrides(self, trial: Trial | FrozenTrial) -> dict[str, Any]:
        """A trial's dotted-key overrides: its Optuna parameters and, in a reproducible search,
        its own seed (`trial_seed`) with the sweep's validation split."""
        out = dict(trial.params)
        if self.reproducible and self.seeded:
            out.update(zip(SEED_KEYS, (trial_seed(self.sweep_seed, trial.number),
                                       self.base_seed), strict=True))  # fmt: skip
        return out

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Report each epoch's objective as an intermediate value (once per step; one
        objective only: Optuna takes none for several). Tune passes a result on to the
        searcher only when its scheduler did not stop the trial there."""
        self.passed[trial_id] = _identity(result)
        trial = self.trials.get(trial_id)
        step = epoch_of(result)
        if trial is None or step <= self.last_step.get(trial_id, 0):
            return
        self.last_step[trial_id] = step
        value = result.get(self.metric)
        if not self.multi and finite(value):
            trial.report(float(value), step)
            self._mirror("reported", trial.number, step, float(value))

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Tell Optuna: COMPLETE with the final value, PRUNED if the scheduler stopped it, or
        FAIL (an error, or an end before its epochs that no scheduler decided).

        A trial told FAIL that Tune runs again on resume (`resume_errored`, or the runner's
        `reopen_ended_short`) and that then finishes is added to the study once more with its
        outcome: Optuna cannot change a finished trial, and the sampler must see the value,
        not the failure.
        """
        live = self.trials.get(trial_id)
        budget = (
            self.max_epochs if live is None else trial_budget(self.overrides(live), self.max_epochs)
        )
        outcome = trial_outcome(result, error, self.objectives, budget)
        passed = self.passed.pop(trial_id, None)
        if live is not None and self.reproducible:
            self.halving.ended_trial(live.number)
            if live.number in self.halving.pruned and not error:  # halving's decision (a trial it
                outcome, passed = "pruned", None  # stopped while paused comes without result)
        if outcome == "pruned" and result is not None:
            if passed == _identity(result):
                # Tune withholds from the searcher the result its scheduler stops a trial on;
                # this one was passed on, so the trial ended short by nobody's decision.
                outcome = "fail"
            else:  # the withheld result: its value is the pruned trial's last intermediate
                self.on_trial_result(trial_id, result)
                self.passed.pop(trial_id, None)
        elif outcome == "complete" and result is not None:
            # ASHA stops a trial at max_t too, withholding its last result: reported here, a
            # completed trial's intermediate values cover every epoch (the record's trace)
            self.on_trial_result(trial_id, result)
            self.passed.pop(trial_id, None)
        trial = self.trials.pop(trial_id, None)
        self.last_step.pop(trial_id, None)
        if trial is None:
            failed = self.failed.get(trial_id)
            if failed is not None and outcome != "fail":  # failed before, finished now
                self._add_again(self.study.get_trials(deepcopy=False)[failed], outcome, result)
                del self.failed[trial_id]
            return
        if outcome == "complete":
            assert result is not None
            values = [float(result[m]) for m in self.objectives]
            self.study.tell(trial, values if self.multi else values[0])
        elif outcome == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, state=TrialState.FAIL)
            self.failed[trial_id] = trial.number
        told = self.study.get_trials(deepcopy=False)[trial.number]  # `trials` copies them all
        self._mirror("ended", trial.number, told.state, told.values)

    def _add_again(self, earlier: FrozenTrial, outcome: str, result: dict[str, Any] | None) -> None:
        """A failed trial's configuration as a new trial with the outcome it reached later."""
        assert result is not None
        values = [float(result[m]) for m in self.objectives]
        self.study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.COMPLETE if outcome == "complete" else TrialState.PRUNED,
                params=earlier.params,
                distributions=earlier.distributions,
                values=values if outcome == "complete" or not self.multi else None,
            )
        )
        self._mirror("added", self.study.get_trials(deepcopy=False)[-1])

    def _new_study(self) -> optuna.Study:
        return optuna.create_study(
            study_name=self.study_name,
            directions=self.directions,
            sampler=make_sampler(self.algorithm, self.seed),
        )

    def save(self, checkpoint_path: str) -> None:
        """Write the searcher's state as JSON to `checkpoint_path`.

        A plain write: Tune's `save_to_dir` hands a temporary name and renames it when this
        returns. A second temporary file of our own (and its fsync) lengthened the time Tune's
        background sync of the driver's folder could list a file that was gone by the time
        it copied it ("Saving experiment state to storage … failed", seen on the quickstart).
        """
        trials = [
            _trial_json(t)
            for t in self.study.get_trials(deepcopy=False)
            if t.state != TrialState.WAITING  # enqueued grid cells: rebuilt from the plan
        ]
        state = {
            "format": STATE_FORMAT,
            "asked": self.asked,
            "last_step": self.last_step,
            "in_flight": {tid: trial.number for tid, trial in self.trials.items()},
            "failed": self.failed,
            "queued": [trial.number for trial in self.queue],
            "halving": self.halving.to_json(),
            "trials": trials,
            "random_states": {
                path: _state_json(rng) for path, rng in random_states(self.study.sampler)
            },
        }
        # no indent: the C encoder (an indented dump runs in Python), a third of the bytes
        Path(checkpoint_path).write_text(json.dumps(state) + "\n", encoding="utf-8")

    def restore(self, checkpoint_path: str) -> None:
        """Rebuild the study from what `save` wrote; anything else is refused (a UserError)."""
        data = _read_state(Path(checkpoint_path))
        study = self._new_study()
        by_number = {int(n): tid for tid, n in data["in_flight"].items()}
        queued = [int(n) for n in data.get("queued", [])]
        live: dict[str, Trial] = {}
        queue: list[Trial] = []
        for saved in sorted(data["trials"], key=lambda t: int(t["number"])):
            state, distributions, steps = _parts(saved)
            if state != TrialState.RUNNING:  # validated by Optuna's own constructor
                study.add_trial(
                    optuna.trial.create_trial(
                        state=state, params=saved["params"], distributions=distributions,
                        values=saved["values"] if state != TrialState.FAIL else None,
                        intermediate_values=steps,
                    )
                )  # fmt: skip
                continue
            study.enqueue_trial(saved["params"])  # asked again: same number, same parameters
            trial = study.ask(fixed_distributions=distributions)
            if not self.multi:
                for step, value in sorted(steps.items()):
                    trial.report(value, step)
            if trial.number in by_number:
                live[by_number[trial.number]] = trial
            elif trial.number in queued:  # asked with its batch, not yet handed to Tune
                queue.append(trial)
            else:  # running when saved but no longer Tune's: it will never report
                study.tell(trial, state=TrialState.FAIL)
                self._mirror("ended", trial.number, TrialState.FAIL, None)
        asked = int(data["asked"])
        for cell in self.cells[asked:]:
            study.enqueue_trial(cell)
        saved_states = data.get("random_states", {})
        for path, rng in random_states(study.sampler):  # after the replay, which may draw
            if path in saved_states:
                rng.set_state(_state_from_json(saved_states[path], checkpoint_path))
        self.study, self.trials, self.asked, self.queue = study, live, asked, queue
        self.halving.load_json(data.get("halving", {}))
        self.failed = {str(k): int(v) for k, v in data.get("failed", {}).items()}
        self.passed = {}  # results passed on before the restore are not the ones that end it
        self.last_step = {str(k): int(v) for k, v in data["last_step"].items()}


STATE_FORMAT = "sedsweep.optuna-search/1"


def check_saved_state(experiment: Path) -> None:
    """The searcher state Tune will restore from a sweep's Ray directory (its newest
    `searcher-state-*.pkl`, by name, as Tune picks it) must be one this searcher wrote; else
    a UserError naming it, before Tune reads it. Tune itself logs a refused state and goes on
    from an empty one, which runs the search again from its first trial and deletes the
    record's runs as orphans."""
    found = sorted(experiment.glob(Searcher.CKPT_FILE_TMPL.format("*")))
    if found:
        _read_state(found[-1])


def random_states(sampler: Any, prefix: str = "") -> Iterator[tuple[str, np.random.RandomState]]:
    """Every numpy RandomState an Optuna sampler draws from, by attribute path: its own (kept
    in a LazyRandomState) and those of the samplers it falls back to (TPE's, NSGA-II's random
    sampler; CMA-ES's and GP's independent sampler)."""
    for name, value in sorted(vars(sampler).items()):
        if isinstance(value, optuna.samplers.BaseSampler):
            yield from random_states(value, f"{prefix}{name}.")
        elif type(value).__name__ == "LazyRandomState":
            yield f"{prefix}{name}", value.rng
        elif isinstance(value, np.random.RandomState):
            yield f"{prefix}{name}", value


def _state_json(rng: np.random.RandomState) -> list[Any]:
    """A RandomState's state as JSON: [algorithm, 624 key words, position, has_gauss, gauss]."""
    name, keys, pos, has_gauss, gauss = rng.get_state(legacy=True)
    return [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)]


def _state_from_json(saved: Any, where: str) -> tuple[Any, ...]:
    try:
        name, keys, pos, has_gauss, gauss = saved
        return (str(name), np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss),
                float(gauss))  # fmt: skip
    except (TypeError, ValueError) as exc:
        raise UserError(f"a random state in the searcher state is malformed ({exc})",
                        where=where) from None  # fmt: skip


def _trial_json(trial: FrozenTrial) -> dict[str, Any]:
    """One Optuna trial as plain JSON data."""
    return {
        "number": trial.number,
        "state": trial.state.name,
        "params": trial.params,
        "distributions": {k: distribution_to_json(d) for k, d in trial.distributions.items()},
        "values": trial.values,
        "intermediate_values": {str(k): v for k, v in trial.intermediate_values.items()},
    }


def _parts(saved: dict[str, Any]) -> tuple[TrialState, dict[str, Any], dict[int, float]]:
    """A saved trial's state, distributions and intermediate values, as Optuna objects."""
    distributions = {k: json_to_distribution(v) for k, v in saved["distributions"].items()}
    steps = {int(k): float(v) for k, v in saved["intermediate_values"].items()}
    return TrialState[saved["state"]], distributions, steps


def _read_state(path: Path) -> dict[str, Any]:
    """The JSON a searcher saved; a one-line UserError for anything else (a pickle, a
    truncated file, a foreign format): it is never executed."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = type(exc).__name__
        raise UserError(
            f"not a sedsweep searcher state ({reason}); refusing it (pickles are never loaded)",
            where=str(path),
        ) from None
    keys = ("format", "asked", "last_step", "in_flight", "trials")
    if (
        not isinstance(data, dict)
        or data.get("format") != STATE_FORMAT
        or not all(k in data for k in keys)
    ):
        raise UserError(f"not a {STATE_FORMAT} searcher state; refusing it", where=str(path))
    return data


def _suggest(trial: Trial, key: str, param: Any) -> Any:
    if isinstance(param, FloatParam):
        return trial.suggest_float(key, param.low, param.high, log=param.log, step=param.step)
    if isinstance(param, IntParam):
        step = 1 if param.log else param.step
        return trial.suggest_int(key, param.low, param.high, log=param.log, step=step)
    assert isinstance(param, CategoricalParam)
    return trial.suggest_categorical(key, param.choices)
