"""A finished (or running) sweep as MLflow has it: the parent run, its spec, one entry per trial.

Everything here is read from the tracking server alone, so results of a sweep run elsewhere
against the same server can be tabulated, selected and dashboarded here.

One model per trial: a trial's `val/...` value is read at the epoch whose weights it delivers
(`best_val/...`, the method's own selection rule; the last epoch for methods that do not
select), so ranking, tables, importance and `best` describe the same weights as the test
metrics. Sweeps logged before `best_val/...` existed fall back to the last epoch and say so.

Every trial counts at the fidelity it reached: a pruned trial's values are its own at the
epoch it stopped; `at_rung` compares trials at one common epoch (an ASHA rung).

Validity before statistics: a trial that did not train (`sedsweep.validity`: its loss at the
label prior's, its objective at chance, or its curve still rising at the end of its budget)
stays in the record, marked with the reason, but never enters a ranking, a table's values,
importance, `best` or a claim; `valid` gives the trials that may, `left_out` says how many
were not and why.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from sedsweep.config import flatten
from sedsweep.errors import UserError, did_you_mean
from sedsweep.metrics import SELECTED_EPOCH, SELECTED_PREFIX, lower_is_better, selected_key
from sedsweep.sweep.spec import DATA_PREFIX, SweepSpec, rung_epochs
from sedsweep.tracking import (
    OPTUNA_NUMBER_TAG,
    PARENT_TAG,
    PLANNED_TAG,
    SPEC_ARTIFACT,
    STOPPED_EARLY_TAG,
    TRIAL_TAG,
    all_finished,
    client_for,
)
from sedsweep.validity import REASON_TAG, VALID_TAG, Validity, judge_trial

RUN_ID = re.compile(r"^[0-9a-f]{32}$")

# MLflow run status (+ the scheduler tag) -> trial status as sweeps report it.
COMPLETED, PRUNED, FAILED, RUNNING = "completed", "pruned", "failed", "running"


def parse_param(text: str) -> Any:
    """An MLflow param string back to the value it was written from (str() of a config value)."""
    if text == "None":
        return None
    for number in (int, float):  # before YAML: YAML 1.1 reads "1e-05" as a string
        try:
            return number(text)
        except ValueError:
            pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, int | float | bool | str | list) else text


def lookup(params: dict[str, Any], key: str) -> Any:
    """A dotted key's value; list elements by index (`staged.stages.1`) from the list param."""
    if key in params:
        return params[key]
    head, _, index = key.rpartition(".")
    if head and index.isdigit():
        value = lookup(params, head)
        if isinstance(value, list) and int(index) < len(value):
            return value[int(index)]
    return None


@dataclass
class TrialRun:
    """One trial's child run: parsed params, final metric values, status."""

    run_id: str
    name: str
    status: str
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    start_time: int
    number: int | None

    def value(self, key: str) -> Any:
        """A config (or `data.*`) value of this trial."""
        return lookup(self.params, key)

    def metric(self, key: str) -> float | None:
        """A metric of the trial's delivered model: `val/x` at the selected epoch (`best_val/x`),
        anything else at the last epoch the trial reached; None when absent or not finite."""
        chosen = selected_key(key)
        value = self.metrics.get(chosen if chosen in self.metrics else key)
        return value if value is not None and math.isfinite(value) else None

    @property
    def epochs(self) -> int:
        """Epochs the trial reported (the fidelity it reached)."""
        return int(self.metrics.get("epoch", 0))

    @property
    def selected_epoch(self) -> int:
        """The epoch whose weights the trial delivers (its last when it did not log one)."""
        return int(self.metrics.get(SELECTED_EPOCH, self.epochs))

    @property
    def selects(self) -> bool:
        """True when the trial logged its selected-epoch values (`best_val/...`)."""
        return any(k.startswith(SELECTED_PREFIX) for k in self.metrics)


def short_name(trial: TrialRun) -> str:
    """A trial's short name (`t007`, not the values its run name lists)."""
    return trial.name.split(" ", 1)[0]


def md_text(text: str) -> str:
    """Plain text for a Markdown page: its asterisks escaped, so that `val/*` … `test/*` in a
    note is not read as emphasis (MLflow's artifact viewer ate them)."""
    return text.replace("*", "\\*")


def trial_status(mlflow_status: str, tags: dict[str, str]) -> str:
    """completed / pruned (stopped by the scheduler) / failed (errored or interrupted) / running."""
    pruned = tags.get(STOPPED_EARLY_TAG) == "true"  # FINISHED, or KILLED before PRUNED_TAG
    if mlflow_status in ("FINISHED", "KILLED") and pruned:
        return PRUNED
    if mlflow_status == "FINISHED":
        return COMPLETED
    if mlflow_status in ("RUNNING", "SCHEDULED"):
        return RUNNING
    return FAILED


@dataclass
class Rung:
    """Trials compared at one epoch, with their values of one metric there."""

    epoch: int
    trials: list[TrialRun]
    values: list[float]
    max_epochs: int

    @property
    def n(self) -> int:
        """Trials with a value at this epoch."""
        return len(self.trials)

    def describe(self) -> str:
        """'epoch 2 of 6 (7 trials)'."""
        final = " (the last)" if self.epoch == self.max_epochs else f" of {self.max_epochs}"
        return f"epoch {self.epoch}{final}, {self.n} trial{'s' if self.n != 1 else ''}"


@dataclass
class SweepRuns:
    """A sweep's parent run, its search-space spec and its trials (ordered by trial number)."""

    tracking_uri: str
    experiment_id: str
    experiment_name: str
    parent_run_id: str
    parent_status: str
    parent_tags: dict[str, str]
    parent_metrics: dict[str, float]
    start_time: int
    spec: SweepSpec
    trials: list[TrialRun] = field(default_factory=list)
    _histories: dict[tuple[str, str], list[tuple[int, float]]] = field(
        default_factory=dict, repr=False
    )
    executions: int = 1  # parent runs (executions) the sweep's experiment holds
    _validity: dict[str, Validity] = field(default_factory=dict, repr=False)

    @property
    def which(self) -> str:
        """Which execution is read, for commands given a sweep name."""
        started = dt.datetime.fromtimestamp(self.start_time / 1000, dt.UTC)
        more = f" of {self.executions}" if self.executions > 1 else ""
        return (
            f"{self.name}: execution {self.parent_run_id}{more}, started "
            f"{started:%Y-%m-%d %H:%M} UTC, {len(self.trials)} trials ({self.parent_status})"
        )

    @property
    def name(self) -> str:
        """The sweep's name (its MLflow experiment)."""
        return self.spec.name

    @cached_property
    def fixed_values(self) -> dict[str, Any]:
        """What the whole sweep sets, as dotted keys: its `fixed` config and its generator
        options (`data.options.snr_db: 0.0`); a trial logs only the data keys its cell varies,
        and an evidence CSV only the keys the design varies."""
        data = {f"{DATA_PREFIX}options.{k}": v for k, v in flatten(self.spec.data.options).items()}
        return flatten(self.spec.fixed) | data

    @property
    def objective(self) -> str:
        """The metric trials are ranked by (a Pareto sweep's primary objective)."""
        return self.spec.primary.metric

    @property
    def maximise(self) -> bool:
        """True when a larger objective is better."""
        return self.spec.primary.maximise

    def lower_is_better(self, metric: str) -> bool:
        """A metric's direction: an objective's mode, else the metric's own (errors, losses)."""
        for objective in self.spec.objectives:
            if metric in (objective.metric, selected_key(objective.metric)):
                return not objective.maximise
        return lower_is_better(metric)

    def with_status(self, *statuses: str) -> list[TrialRun]:
        """Trials in any of the given statuses."""
        return [t for t in self.trials if t.status in statuses]

    @property
    def counts(self) -> dict[str, int]:
        """Trials per status."""
        return {s: len(self.with_status(s)) for s in (COMPLETED, PRUNED, FAILED, RUNNING)}

    @property
    def planned(self) -> int:
        """Trials the sweep planned (its parent run's tag; else the trials it holds)."""
        return int(self.parent_tags.get(PLANNED_TAG, len(self.trials)))

    @property
    def complete(self) -> bool:
        """Every planned trial completed or was pruned, and none failed."""
        counts = self.counts
        return all_finished(counts[COMPLETED] + counts[PRUNED], counts[FAILED], self.planned)

    @property
    def searched_keys(self) -> list[str]:
        """Keys that vary between trials by design: searched, explicit cells, data axes."""
        keys = list(self.spec.space)
        for cell in self.spec.cells:
            keys += [k for k in flatten(cell) if k not in keys]
        return keys

    @property
    def replicate_keys(self) -> list[str]:
        """The replicate axes (seed, fold) the sweep repeats cells over."""
        return list(self.spec.replicates)

    def validity(self, trial: TrialRun) -> Validity:
        """Whether `trial` trained (`sedsweep.validity.judge` on its final metrics and, when it
        ran its whole budget, its objective's validation curve); computed once per trial."""
        found = self._validity.get(trial.run_id)
        if found is None and not self.tracking_uri and VALID_TAG in trial.tags:
            # a record without a store (evidence CSVs): the verdict it was exported with
            tag = trial.tags[VALID_TAG]
            found = Validity(tag != "false", trial.tags.get(REASON_TAG, ""), tag != "unjudged")
        if found is None:
            found = judge_trial(
                trial.metrics, self.objective, maximise=self.maximise,
                completed=trial.status == COMPLETED,
                curve=lambda: [v for _, v in sorted(self.history(trial.run_id, self.objective))],
            )  # fmt: skip
            self._validity[trial.run_id] = found
        return found

    def valid(self, *statuses: str) -> list[TrialRun]:
        """The valid trials in any of the given statuses (all statuses when none is given)."""
        pool = self.with_status(*statuses) if statuses else self.trials
        return [t for t in pool if self.validity(t).valid]

    def left_out(self, *statuses: str, reasons: bool = True) -> str | None:
        """'2 of 8 completed or pruned trials left out as not trained (t003: …; t005: …)', or
        None when every such trial is valid; without `reasons`, the count alone."""
        pool = self.with_status(*statuses) if statuses else self.trials
        invalid = [t for t in pool if not self.validity(t).valid]
        if not invalid:
            return None
        what = " or ".join(statuses) + " " if statuses else ""
        if not reasons:
            return f"{len(invalid)} of {len(pool)} {what}trials left out as not trained"
        why = "; ".join(f"{short_name(t)}: {self.validity(t).reason}" for t in invalid[:3])
        more = f"; and {len(invalid) - 3} more" if len(invalid) > 3 else ""
        return f"{len(invalid)} of {len(pool)} {what}trials left out as not trained ({why}{more})"

    def ranked(self) -> list[TrialRun]:
        """Valid completed trials with a finite objective, best first."""
        scored = [t for t in self.valid(COMPLETED) if t.metric(self.objective) is not None]
        return sorted(scored, key=lambda t: t.metric(self.objective), reverse=self.maximise)

    def leaderboard(self) -> list[TrialRun]:
        """Every trial at the fidelity it reached: completed ones by objective, then pruned ones
        by the epoch they reached and their objective there, then the rest; within each
        status the valid trials first."""
        return list(self._leaderboard)

    def rank(self, run_id: str) -> int:
        """A trial's place in `leaderboard()` (0: first), found in O(1)."""
        return self._ranks[run_id]

    @cached_property
    def _ranks(self) -> dict[str, int]:
        return {t.run_id: i for i, t in enumerate(self._leaderboard)}

    @cached_property
    def _leaderboard(self) -> list[TrialRun]:
        order = {COMPLETED: 0, PRUNED: 1, RUNNING: 2, FAILED: 3}
        sign = -1.0 if self.maximise else 1.0

        def key(t: TrialRun) -> tuple:
            value = t.metric(self.objective)
            valid = t.status in (COMPLETED, PRUNED) and self.validity(t).valid
            return (order[t.status], not valid, -t.epochs, value is None, sign * (value or 0.0))

        return sorted(self.trials, key=key)

    @property
    def selection_note(self) -> str:
        """How validation values are read, for table and report notes."""
        if any(t.selects for t in self.trials):
            return (
                "val/* values are each trial's selected model's (best_val/*: at the epoch its "
                "method selects on validation, the last epoch for methods that do not select), "
                "the weights its test/* values come from"
            )
        return "val/* values are the last epoch's (this sweep logged no best_val/*)"

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """A metric's per-epoch history (step, value) of one run (fetched once)."""
        cached = self._histories.get((run_id, key))
        if cached is None:
            cached = [(m.step, m.value) for m in self.client.get_metric_history(run_id, key)]
            self._histories[(run_id, key)] = cached
        return cached

    def value_at(self, trial: TrialRun, key: str, epoch: int) -> float | None:
        """A metric of the trial's delivered model as of `epoch` (selected key for `val/...`);
        None when the trial did not reach it or the value is not finite."""
        if self.reached(trial) < epoch:
            return None
        if trial.epochs <= epoch:  # its last epoch (a completed trial reached them all)
            return trial.metric(key)
        chosen = selected_key(key)
        name = chosen if chosen in trial.metrics else key
        values = [v for step, v in self.history(trial.run_id, name) if step == epoch]
        return values[-1] if values and math.isfinite(values[-1]) else None

    def reached(self, trial: TrialRun) -> int:
        """The fidelity a trial reached: every epoch if it completed, else its last epoch."""
        return max(self.max_epochs, trial.epochs) if trial.status == COMPLETED else trial.epochs

    @cached_property
    def max_epochs(self) -> int:
        """The epochs a trial runs when nothing stops it early: the budget's, else the
        `epochs` every trial's config logged."""
        if self.spec.budget.max_epochs:
            return self.spec.budget.max_epochs
        logged = [v for t in self.trials if isinstance(v := t.params.get("epochs"), int)]
        return max(logged or [t.epochs for t in self.trials] or [1])

    def rungs(self) -> list[int]:
        """Epochs at which trials are compared, ascending (`rung_epochs`)."""
        return rung_epochs(self.spec.scheduler, self.max_epochs)

    def at_rung(self, key: str, min_trials: int, trials: list[TrialRun] | None = None) -> Rung:
        """The highest rung at which at least `min_trials` valid non-failed trials have a
        value of `key`, else the rung with the most; with those trials' values there."""
        pool = [
            t
            for t in (trials if trials is not None else self.trials)
            if t.status != FAILED and self.validity(t).valid
        ]
        best: Rung | None = None
        for epoch in reversed(self.rungs()):
            reached = [t for t in pool if self.reached(t) >= epoch]
            if best is not None and len(reached) <= best.n:
                continue  # cannot beat the rung already found
            values = [(t, v) for t in reached if (v := self.value_at(t, key, epoch)) is not None]
            rung = Rung(epoch, [t for t, _ in values], [v for _, v in values], self.max_epochs)
            if rung.n >= min_trials:
                return rung
            if best is None or rung.n > best.n:
                best = rung
        return best or Rung(self.max_epochs, [], [], self.max_epochs)

    def common_rung(self, trials: list[TrialRun]) -> int:
        """The highest rung every one of `trials` reached (the first rung if one reached none)."""
        reached = min((self.reached(t) for t in trials), default=0)
        below = [r for r in self.rungs() if r <= reached]
        return below[-1] if below else self.rungs()[0]

    def describe_counts(self) -> str:
        """'1 completed, 7 pruned (stopped at epochs 2, 4)' for messages."""
        parts = []
        for status, n in self.counts.items():
            if n and status == PRUNED:
                epochs = sorted({t.epochs for t in self.with_status(PRUNED)})
                at = ", ".join(map(str, epochs))
                parts.append(f"{n} {status} (stopped at epoch{'s' * (len(epochs) > 1)} {at})")
            elif n:
                parts.append(f"{n} {status}")
        return ", ".join(parts) or "no trials"

    @cached_property
    def client(self) -> Any:
        """The MlflowClient of the tracking store the sweep is in."""
        return client_for(self.tracking_uri)


def load_sweep_runs(target: str, tracking_uri: str) -> SweepRuns:
    """A sweep by parent run id, or by name (MLflow experiment; its newest sweep execution)."""
    client = client_for(tracking_uri)
    parent, runs = _find_parent(client, target)
    experiment = client.get_experiment(parent.info.experiment_id)
    spec = _load_spec(client, parent.info.run_id, target)
    trials = [
        _trial(run, spec)
        for run in runs
        if TRIAL_TAG in run.data.tags and run.data.tags.get(PARENT_TAG) == parent.info.run_id
    ]
    trials.sort(key=lambda t: (t.number if t.number is not None else 1 << 30, t.start_time))
    return SweepRuns(
        tracking_uri=tracking_uri,
        experiment_id=experiment.experiment_id,
        experiment_name=experiment.name,
        parent_run_id=parent.info.run_id,
        parent_status=parent.info.status,
        parent_tags=dict(parent.data.tags),
        parent_metrics=dict(parent.data.metrics),
        start_time=parent.info.start_time or 0,
        spec=spec,
        trials=trials,
        executions=len(_parents(runs)),
    )


def _parents(runs: list[Any]) -> list[Any]:
    """The sweep parent runs (executions) among an experiment's runs."""
    return [r for r in runs if PLANNED_TAG in r.data.tags and PARENT_TAG not in r.data.tags]


def _find_parent(client: Any, target: str) -> tuple[Any, list[Any]]:
    """The parent run `target` names (its experiment's newest execution that ran trials, for
    a name), and every run of its experiment (one search serves all that is read)."""
    from mlflow.exceptions import MlflowException

    if RUN_ID.match(target):
        try:
            run = client.get_run(target)
        except MlflowException:
            run = None
        if run is not None:
            if PLANNED_TAG not in run.data.tags:
                raise UserError("is a run id but not a sweep's parent run", where=target)
            return run, _search(client, run.info.experiment_id, None)
    experiment = client.get_experiment_by_name(target)
    if experiment is None:
        hint = did_you_mean(target, (e.name for e in client.search_experiments())).strip()
        raise UserError(
            "no sweep (MLflow experiment or parent run id) of this name"
            + (f" ({hint})" if hint else ""),
            where=target,
        )
    runs = _search(client, experiment.experiment_id, None)
    parents = _parents(runs)
    if not parents:
        raise UserError("the experiment holds no sweep parent run", where=target)
    with_trials = {r.data.tags[PARENT_TAG] for r in runs if TRIAL_TAG in r.data.tags}
    newest_first = sorted(parents, key=lambda r: r.info.start_time or 0, reverse=True)
    # the newest execution that ran trials: one that failed before any trial says nothing
    chosen = next((r for r in newest_first if r.info.run_id in with_trials), newest_first[0])
    return chosen, runs


def _search(client: Any, experiment_id: str, filter_string: str | None) -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string or "", max_results=1000, page_token=token
        )
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _load_spec(client: Any, run_id: str, target: str) -> SweepSpec:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, SPEC_ARTIFACT, tmp)
            raw = yaml.safe_load(Path(path).read_text())
        except Exception as exc:
            raise UserError(
                f"the parent run has no readable {SPEC_ARTIFACT} ({exc})", where=target
            ) from None
    return SweepSpec.model_validate(raw)


def _trial(run: Any, spec: SweepSpec) -> TrialRun:
    params = {k: parse_param(v) for k, v in run.data.params.items()}
    # The sweep's own data settings hold for every trial unless a data axis overrides them.
    for key, value in flatten(spec.data.model_dump(mode="json"), DATA_PREFIX).items():
        params.setdefault(key, value)
    tags = dict(run.data.tags)
    number = tags.get(OPTUNA_NUMBER_TAG)
    return TrialRun(
        run_id=run.info.run_id,
        name=run.info.run_name or run.info.run_id,
        status=trial_status(run.info.status, tags),
        params=params,
        metrics=dict(run.data.metrics),
        tags=tags,
        start_time=run.info.start_time or 0,
        number=int(number) if number and number.lstrip("-").isdigit() else None,
    )
