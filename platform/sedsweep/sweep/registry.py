"""Samplers and schedulers by name: the one list the spec, the searcher and the runner read.

`search.algorithm` and `scheduler.type` name an entry here; the spec validates against these
names and their capabilities (several objectives, a reproducible search), the searcher builds
its Optuna sampler with `make_sampler` and the runner its Tune scheduler with
`make_scheduler`. A scheduler's builder is named as "module:function" and imported only when
a sweep builds it (as are Optuna's samplers), so the spec, and `sweep --dry-run`, load
neither Ray nor the modules that need it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from sedsweep.sweep.search import OptunaPruningSearch
    from sedsweep.sweep.spec import SweepPlan

SamplerName = Literal["tpe", "random", "cmaes", "gp", "nsga2", "grid"]
SchedulerName = Literal["asha", "hyperband", "median", "none"]
BUILDERS = "sedsweep.sweep.schedulers"


@dataclass(frozen=True)
class SamplerKind:
    optuna_class: str  # in optuna.samplers; its constructor takes `seed`
    multi_objective: bool  # can search several objectives (a Pareto sweep)


@dataclass(frozen=True)
class SchedulerKind:
    builder: str  # "module:function" building the Tune scheduler from (plan, searcher)
    reproducible: bool  # has a form a reproducible search can run (decided per batch)
    rungs: bool  # compares trials at milestone epochs only (else at any epoch)


SAMPLERS: dict[str, SamplerKind] = {
    "tpe": SamplerKind("TPESampler", multi_objective=True),
    "random": SamplerKind("RandomSampler", multi_objective=True),
    "cmaes": SamplerKind("CmaEsSampler", multi_objective=False),
    "gp": SamplerKind("GPSampler", multi_objective=True),
    "nsga2": SamplerKind("NSGAIISampler", multi_objective=True),
    # a grid's cells are enqueued up front; the sampler only serves them
    "grid": SamplerKind("RandomSampler", multi_objective=True),
}


def make_sampler(name: str, seed: int | None) -> Any:
    """The Optuna sampler `search.algorithm: name` runs with."""
    import optuna

    return getattr(optuna.samplers, SAMPLERS[name].optuna_class)(seed=seed)


def multi_objective_samplers() -> list[str]:
    """The samplers a Pareto sweep may use."""
    return [name for name, kind in SAMPLERS.items() if kind.multi_objective]


SCHEDULERS: dict[str, SchedulerKind] = {
    "asha": SchedulerKind(f"{BUILDERS}:asha", reproducible=True, rungs=True),
    "hyperband": SchedulerKind(f"{BUILDERS}:hyperband", reproducible=False, rungs=True),
    "median": SchedulerKind(f"{BUILDERS}:median", reproducible=False, rungs=False),
    "none": SchedulerKind(f"{BUILDERS}:fifo", reproducible=True, rungs=False),
}


def make_scheduler(plan: SweepPlan, search: OptunaPruningSearch) -> Any:
    """The Tune scheduler of `plan` (a reproducible ASHA shares the searcher's record)."""
    module, _, function = SCHEDULERS[plan.spec.scheduler.type].builder.partition(":")
    return getattr(importlib.import_module(module), function)(plan, search)


assert set(get_args(SamplerName)) == set(SAMPLERS), "SamplerName and SAMPLERS disagree"
assert set(get_args(SchedulerName)) == set(SCHEDULERS), "SchedulerName and SCHEDULERS disagree"
