"""The generic epoch loop: drives any Method for `sedsweep train` and for the Ray trainable."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from sedsweep.methods.base import Method
from sedsweep.metrics import SELECTED_EPOCH, SELECTED_PREFIX
from sedsweep.validity import CHANCE_PREFIX

EpochCallback = Callable[[int, dict[str, float]], bool | None]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the run cannot continue meaningfully."""


def run_epochs(
    method: Method,
    epochs: int,
    *,
    eval_splits: Sequence[str] = ("val", "test"),
    on_epoch: EpochCallback | None = None,
) -> dict[str, float]:
    """Train from `method.epoch + 1` to `epochs`, evaluating each split after every epoch.

    Metrics are keyed `train/…`, `val/…`, `test/…` plus `epoch` and `epoch_time_s`, and
    `best_val/…` with `selected_epoch`: the validation metrics of the weights the method would
    deliver now (`Method.selection_epoch`; NaN while it has selected none). The first epoch run
    here also carries the method's `references()` under `chance/` (what a model that learned
    nothing scores: the validity gate's yardstick, `sedsweep.validity`). `on_epoch` receives
    them and may return True to stop early. Returns the last epoch's metrics.
    """
    last: dict[str, float] = {}
    references: dict[str, float] | None = None
    while method.epoch < epochs:
        started = time.perf_counter()
        train = method.train_epoch()
        epoch = method.epoch
        loss = train.get("loss", math.nan)
        if not math.isfinite(loss):
            raise NonFiniteLossError(f"epoch {epoch}: training loss is {loss}; stopping this run")
        metrics = {f"train/{k}": float(v) for k, v in train.items()}
        for split in eval_splits:
            metrics.update({f"{split}/{k}": float(v) for k, v in method.evaluate(split).items()})
        selected = method.selection_epoch()
        if selected == epoch and "val" in eval_splits:
            method.selected_val = {
                k.removeprefix("val/"): v for k, v in metrics.items() if k.startswith("val/")
            }
        val_names = [k.removeprefix("val/") for k in metrics if k.startswith("val/")]
        for name in val_names:
            metrics[SELECTED_PREFIX + name] = method.selected_val.get(name, math.nan)
        metrics[SELECTED_EPOCH] = float(selected)
        metrics["epoch"] = float(epoch)
        metrics["epoch_time_s"] = time.perf_counter() - started
        if references is None:  # after the epoch: a method may build what it needs lazily
            references = method.references()
            metrics.update({CHANCE_PREFIX + k: float(v) for k, v in references.items()})
        last = metrics
        if on_epoch is not None and on_epoch(epoch, metrics):
            break
    return last
