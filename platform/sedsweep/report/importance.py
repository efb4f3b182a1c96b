"""Parameter importance over a sweep's trials, with Optuna's evaluators.

The trials are rebuilt from MLflow into an in-memory Optuna study (distributions from the
search-space file, values from the runs), so this works on any sweep the tracking server
holds. PED-ANOVA is the default evaluator (fast, and meant for the top-quantile behaviour a
search cares about); fANOVA (random-forest functional ANOVA) is the alternative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sedsweep.errors import UserError, unknown_name
from sedsweep.fsio import atomic_file
from sedsweep.report.design import Factor, check_design, hashable
from sedsweep.report.runs import COMPLETED, FAILED, PRUNED, SweepRuns, TrialRun
from sedsweep.sweep.spec import (
    CategoricalParam,
    FloatParam,
    GridParam,
    IntParam,
    conditions,
    is_active,
    same_value,
    when_text,
)

EVALUATORS = ("ped-anova", "fanova")


@dataclass
class Importance:
    """Importance per factor (summing to 1 for fANOVA), what it was computed on, or why not."""

    evaluator: str
    target: str
    values: list[tuple[str, float]] = field(default_factory=list)
    note: str | None = None
    basis: str | None = None
    warnings: list[str] = field(default_factory=list)
    subspace: str | None = None  # the condition these trials share ('when_loss = mmm')
    subspaces: list[Importance] = field(default_factory=list)  # conditional keys, where active

    def to_csv(self) -> str:
        """param,importance,where lines (where: the condition a conditional key's importance
        was computed under; empty for keys that always act)."""
        lines = [f"{k},{v!r},\n" for k, v in self.values]
        for part in self.subspaces:
            lines += [f"{k},{v!r},{part.subspace}\n" for k, v in part.values]
        return "param,importance,where\n" + "".join(lines)

    def rows(self) -> list[tuple[str, float, str]]:
        """(parameter, importance, over which trials) for the whole space and each subspace."""
        out = [(k, v, "all trials") for k, v in self.values]
        for part in self.subspaces:
            out += [(k, v, f"where {part.subspace}") for k, v in part.values]
        return out

    def labelled(self) -> list[tuple[str, float]]:
        """(`mmm.w_min (where when_loss = mmm)`, importance): `rows` with the subspace in the
        label, for charts and the dashboard."""
        return [(k if over == "all trials" else f"{k} ({over})", v) for k, v, over in self.rows()]

    @property
    def computed(self) -> bool:
        """Whether any importance was computed (over all trials or a subspace)."""
        return bool(self.rows())


MIN_TRIALS = 3  # fewer trials than this: no importance at all


def _evaluator(name: str, seed: int) -> Any:
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    if name == "ped-anova":
        return PedAnovaImportanceEvaluator()
    if name == "fanova":
        return FanovaImportanceEvaluator(seed=seed)
    raise UserError(unknown_name("evaluator", name, EVALUATORS), where="--evaluator")


def _continuous(sweep: SweepRuns) -> list[str]:
    return [k for k, p in sweep.spec.space.items() if isinstance(p, FloatParam | IntParam)]


def _distribution(sweep: SweepRuns, factor: Factor, trials: list[TrialRun]) -> Any:
    """The factor's Optuna distribution: the searched range or choices of a single searched
    key, else the levels observed (explicit cells, confounded groups)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    param = sweep.spec.space.get(factor.keys[0]) if len(factor.keys) == 1 else None
    if isinstance(param, FloatParam):
        return FloatDistribution(param.low, param.high, log=param.log, step=param.step)
    if isinstance(param, IntParam):
        step = None if param.log else param.step
        return IntDistribution(param.low, param.high, log=param.log, step=step or 1)
    if isinstance(param, CategoricalParam | GridParam):
        choices = param.choices if isinstance(param, CategoricalParam) else param.values
        return CategoricalDistribution([hashable(c) for c in choices])
    return CategoricalDistribution(sorted({factor.level(t) for t in trials}, key=str))


def param_importance(
    sweep: SweepRuns, evaluator: str = "ped-anova", target: str | None = None
) -> Importance:
    """Importance of each searched factor for `target` (default: the sweep's objective).

    Trials count at the fidelity they reached, the valid ones only (a trial that did not
    train says nothing about its parameters): the values are those at the highest rung that
    at least max(3, 2 × varying keys) trials reached (else the rung most trials reached), so a
    search whose trials were mostly pruned still gets an importance, and says on what.
    Confounded keys are one factor (`report.design`); constant ones are left out.

    A conditional key (`when:`) is credited only where it acts: the keys that always act are
    ranked over every trial, and each condition's keys (with the keys that always act) over
    the trials where that condition holds, as `subspaces` that say which.
    """
    metric = target or sweep.objective
    when = conditions(sweep.spec.space)
    keys = [k for k in sweep.searched_keys if k not in when]
    live = [t for t in sweep.valid() if t.status != FAILED]
    result = _importance(sweep, evaluator, metric, keys, live)
    groups: dict[str, list[str]] = {}
    for key, condition in when.items():
        groups.setdefault(when_text(condition), []).append(key)
    readers = {c for condition in when.values() for c in condition}
    for where, conditional in groups.items():
        inside = [
            t
            for t in live
            if all(is_active(k, {c: t.value(c) for c in readers}, when) for k in conditional)
        ]
        part = _importance(sweep, evaluator, metric, [*conditional, *keys], inside)
        part.subspace = where
        if part.basis:
            part.basis = f"where {where}: {part.basis}"
        result.subspaces.append(part)
    return result


def _importance(
    sweep: SweepRuns, evaluator: str, metric: str, keys: list[str], live: list[TrialRun]
) -> Importance:
    """Importance of `keys` over the trials `live` (valid, not failed)."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    result = Importance(evaluator=evaluator, target=metric)
    engine = _evaluator(evaluator, sweep.spec.search.seed)
    wanted = max(MIN_TRIALS, 2 * len(check_design(live, keys).varying))
    rung = sweep.at_rung(metric, wanted, live)
    counts = sweep.describe_counts()
    if (left := sweep.left_out(COMPLETED, PRUNED, reasons=False)) is not None:
        counts += f"; {left}"
    if rung.n < MIN_TRIALS:
        result.note = (
            f"importance not computed: {counts}; at most {rung.n} trial(s) share a rung "
            f"with {metric} (need {MIN_TRIALS})"
        )
        return result
    design = check_design(rung.trials, keys, _continuous(sweep))
    result.warnings = design.warnings()
    result.basis = f"{metric} at {rung.describe()} ({counts})"
    if not design.factors:
        searched = ", ".join(keys) or "none"
        result.note = (
            f"importance not computed: no searched key varies between the {rung.n} trials "
            f"at {rung.describe()} (searched: {searched})"
        )
        return result
    if len(design.factors) == 1:  # nothing to compare: the one factor explains everything
        result.values = [(design.factors[0].name, 1.0)]
        return result
    distributions = {f.name: _distribution(sweep, f, rung.trials) for f in design.factors}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "minimize" if sweep.lower_is_better(metric) else "maximize"
    study = optuna.create_study(direction=direction)
    for trial, value in zip(rung.trials, rung.values, strict=True):
        params = {}
        for factor in design.factors:
            dist = distributions[factor.name]
            level = factor.level(trial)
            params[factor.name] = (
                _choice(dist, level) if isinstance(dist, CategoricalDistribution) else level
            )
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=distributions, value=value)
        )
    try:
        scores = optuna.importance.get_param_importances(study, evaluator=engine)
    except (RuntimeError, ValueError) as exc:
        result.note = f"importance not computed: {exc}"
        return result
    result.values = [(k, float(v)) for k, v in scores.items() if math.isfinite(v)]
    return result


def _choice(dist: Any, value: Any) -> Any:
    """The distribution's own choice equal to `value` (0.001 from a param string vs 1e-3)."""
    for choice in dist.choices:
        if same_value(choice, value):
            return choice
    return value


def plot_importance(importance: Importance, path: Path) -> Path:
    """A horizontal bar chart of the importances (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k, _ in importance.labelled()][::-1]
    values = [v for _, v in importance.labelled()][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * max(len(names), 1)))
    ax.barh(names, values, color="#3b6ea8")
    ax.set_xlabel(f"importance ({importance.evaluator}) for {importance.target}")
    ax.set_xlim(0, max([*values, 1e-9]) * 1.1)
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
    return path
