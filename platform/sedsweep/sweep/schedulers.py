"""Ray Tune schedulers by the names of `registry.SCHEDULERS` (each built from the sweep's plan
and its searcher). Time is the method's epoch (`EPOCH_KEY`), so a trial resumed from an
earlier checkpoint is judged at the epoch its weights have, and grace periods count epochs,
not seconds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sedsweep.sweep.spec import EPOCH_KEY

if TYPE_CHECKING:
    from sedsweep.sweep.search import OptunaPruningSearch
    from sedsweep.sweep.spec import SweepPlan


def asha(plan: SweepPlan, search: OptunaPruningSearch) -> Any:
    s = plan.spec.scheduler
    if plan.spec.search.reproducible:  # the same rungs, decided per batch (searcher's record)
        from sedsweep.sweep.halving import SynchronousHalving

        return SynchronousHalving(search, plan.spec.budget.max_concurrent)
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr=EPOCH_KEY, max_t=plan.epochs, grace_period=min(s.grace_period, plan.epochs),
        reduction_factor=s.reduction_factor,
    )  # fmt: skip


def hyperband(plan: SweepPlan, search: OptunaPruningSearch) -> Any:
    from ray.tune.schedulers import HyperBandScheduler

    s = plan.spec.scheduler
    return HyperBandScheduler(
        time_attr=EPOCH_KEY, max_t=plan.epochs, reduction_factor=s.reduction_factor
    )


def median(plan: SweepPlan, search: OptunaPruningSearch) -> Any:
    from ray.tune.schedulers import MedianStoppingRule

    return MedianStoppingRule(time_attr=EPOCH_KEY, grace_period=plan.spec.scheduler.grace_period)


def fifo(plan: SweepPlan, search: OptunaPruningSearch) -> Any:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()
