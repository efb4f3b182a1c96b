"""Parameter importance over a sweep's completed trials, with Optuna's evaluators.

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

from sedsweep.errors import UserError
from sedsweep.fsio import atomic_file
from sedsweep.report.runs import COMPLETED, SweepRuns, same_value
from sedsweep.sweep.spec import CategoricalParam, FloatParam, GridParam, IntParam

EVALUATORS = ("ped-anova", "fanova")


@dataclass
class Importance:
    """Importance per parameter (summing to 1 for fANOVA), or why none was computed."""

    evaluator: str
    target: str
    values: list[tuple[str, float]] = field(default_factory=list)
    note: str | None = None

    def to_csv(self) -> str:
        """param,importance lines."""
        return "param,importance\n" + "".join(f"{k},{v!r}\n" for k, v in self.values)


def _evaluator(name: str, seed: int) -> Any:
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    if name == "ped-anova":
        return PedAnovaImportanceEvaluator()
    if name == "fanova":
        return FanovaImportanceEvaluator(seed=seed)
    raise UserError(f"unknown evaluator {name!r} (known: {', '.join(EVALUATORS)})", "--evaluator")


def _distributions(sweep: SweepRuns) -> dict[str, Any]:
    """An Optuna distribution per parameter that varies between the completed trials."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    trials = sweep.with_status(COMPLETED)
    out: dict[str, Any] = {}
    for key in sweep.searched_keys:
        observed = [_hashable(t.value(key)) for t in trials]
        if len(set(observed)) < 2:
            continue
        param = sweep.spec.space.get(key)
        if isinstance(param, FloatParam):
            out[key] = FloatDistribution(param.low, param.high, log=param.log, step=param.step)
        elif isinstance(param, IntParam):
            step = None if param.log else param.step
            out[key] = IntDistribution(param.low, param.high, log=param.log, step=step or 1)
        elif isinstance(param, CategoricalParam | GridParam):
            choices = param.choices if isinstance(param, CategoricalParam) else param.values
            out[key] = CategoricalDistribution([_hashable(c) for c in choices])
        else:  # a key of explicit grid cells
            out[key] = CategoricalDistribution(sorted(set(observed), key=str))
    return out


def _hashable(value: Any) -> Any:
    return str(value) if isinstance(value, list | dict) else value


def param_importance(
    sweep: SweepRuns, evaluator: str = "ped-anova", target: str | None = None
) -> Importance:
    """Importance of each searched parameter for `target` (default: the sweep's objective)."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    metric = target or sweep.objective
    result = Importance(evaluator=evaluator, target=metric)
    engine = _evaluator(evaluator, sweep.spec.search.seed)
    distributions = _distributions(sweep)
    if len(distributions) < 1:
        result.note = "importance not computed: no searched parameter varies between trials"
        return result
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "minimize" if sweep.lower_is_better(metric) else "maximize"
    study = optuna.create_study(direction=direction)
    for trial in sweep.with_status(COMPLETED):
        value = trial.metric(metric)
        if value is None:
            continue
        params = {}
        for key, dist in distributions.items():
            raw = _hashable(trial.value(key))
            if isinstance(dist, CategoricalDistribution):
                params[key] = _choice(dist, raw)
            else:
                params[key] = raw
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=distributions, value=value)
        )
    n = len(study.trials)
    if n < 3:
        result.note = f"importance not computed: {n} completed trials with {metric} (need 3)"
        return result
    if len(distributions) == 1:  # nothing to compare: the one parameter explains everything
        result.values = [(next(iter(distributions)), 1.0)]
        return result
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

    names = [k for k, _ in importance.values][::-1]
    values = [v for _, v in importance.values][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * max(len(names), 1)))
    ax.barh(names, values, color="#3b6ea8")
    ax.set_xlabel(f"importance ({importance.evaluator}) for {importance.target}")
    ax.set_xlim(0, max([*values, 1e-9]) * 1.1)
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
    return path
