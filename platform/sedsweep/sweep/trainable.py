"""The Ray Tune trainable: the generic epoch loop with a checkpoint reported every epoch."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from sedsweep.features import FeatureSet
from sedsweep.loop import run_epochs
from sedsweep.methods import get_method
from sedsweep.methods.base import pick_device
from sedsweep.sweep.spec import data_key, trial_config
from sedsweep.tracking import FIGURES_DIR

STATE_FILE = "state.pt"
NODE_KEY = "node_id"  # which Ray node ran the trial (a string, not logged as a metric)


def run_trial(
    config: dict[str, Any],
    *,
    features: dict[str, FeatureSet],
    method: str,
    base_config: dict[str, Any],
    epochs: int,
    threads: int,
) -> None:
    """Train one trial, resuming from Tune's checkpoint if there is one; report every epoch.

    `features` (one FeatureSet per data variant, keyed by `data_key`) arrive once through the
    Ray object store (`tune.with_parameters`); trials never compute features. The final
    epoch's checkpoint also carries the method's figures.
    """
    torch.set_num_threads(max(threads, 1))
    method_cls = get_method(method)
    cfg = method_cls.Config.model_validate(trial_config(base_config, config["overrides"], epochs))
    trainer = method_cls(cfg, features[data_key(config["overrides"])], pick_device(None))
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            # weights_only: a checkpoint is data (tensors, numbers, strings, lists, dicts):
            # a pickle planted in the storage cannot run code in a worker
            trainer.load_state_dict(torch.load(Path(folder) / STATE_FILE, weights_only=True))

    node = ray.get_runtime_context().get_node_id()

    def report(epoch: int, metrics: dict[str, float]) -> None:
        with tempfile.TemporaryDirectory() as folder:
            torch.save(trainer.state_dict(), Path(folder) / STATE_FILE)
            if epoch == epochs:
                figures = Path(folder) / FIGURES_DIR
                figures.mkdir()
                trainer.artifacts(figures)
            result = {**metrics, NODE_KEY: node}
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))

    run_epochs(trainer, epochs, on_epoch=report)
