"""The Ray Tune trainable: the generic epoch loop with a checkpoint reported every epoch."""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from sedsweep.errors import UserError
from sedsweep.features import FeatureSet
from sedsweep.loop import run_epochs
from sedsweep.methods import get_method
from sedsweep.methods.base import pick_device, render_artifacts
from sedsweep.sweep.spec import data_key, trial_config
from sedsweep.tracking import FIGURES_DIR

STATE_FILE = "state.pt"
NODE_KEY = "node_id"  # which Ray node ran the trial (a string, not logged as a metric)


def load_state(path: Path) -> dict[str, Any]:
    """A trial checkpoint's state, loaded as data only (`weights_only`: tensors, numbers,
    strings, lists, dicts): a pickle planted in the storage cannot run code in a worker; it
    is refused, as is a damaged file, with a one-line error naming the file."""
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"refusing a checkpoint that is not plain data ({first[:200]})", where=str(path)
        ) from None
    except (OSError, EOFError, RuntimeError, ValueError) as exc:
        raise UserError(
            f"unreadable checkpoint ({type(exc).__name__}: {str(exc)[:200]})", where=str(path)
        ) from None


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
            trainer.load_state_dict(load_state(Path(folder) / STATE_FILE))

    node = ray.get_runtime_context().get_node_id()

    def report(epoch: int, metrics: dict[str, float]) -> None:
        with tempfile.TemporaryDirectory() as folder:
            torch.save(trainer.state_dict(), Path(folder) / STATE_FILE)
            if epoch == epochs:
                figures = Path(folder) / FIGURES_DIR
                figures.mkdir()
                render_artifacts(trainer, figures)
            result = {**metrics, NODE_KEY: node}
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))

    run_epochs(trainer, epochs, on_epoch=report)
