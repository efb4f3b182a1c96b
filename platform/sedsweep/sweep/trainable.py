"""The Ray Tune trainable: the generic epoch loop, a result every epoch, checkpoints by policy.

torch and the methods are imported when a trial runs, not with this module: Tune loads this
module into every actor it starts, and with trials shorter than an actor's start-up it
starts actors that never get a trial (their trials went to an actor that freed up first);
those then cost a Ray worker's start, not torch's import as well.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
from ray import tune

from sedsweep.errors import UserError
from sedsweep.sweep.spec import CheckpointPolicy, data_key, trial_method_config

if TYPE_CHECKING:
    from sedsweep.features import FeatureSet

STATE_FILE = "state.pt"
NODE_KEY = "node_id"  # which Ray node ran the trial (a string, not logged as a metric)
RESTORE_NOTE_KEY = "restore_note"  # set in the first result after an unreadable checkpoint
NONDETERMINISTIC_KEY = "nondeterministic"  # operations a deterministic trial could not pin


def load_state(path: Path) -> dict[str, Any]:
    """A trial checkpoint's state, loaded as data only (`weights_only`: tensors, numbers,
    strings, lists, dicts): a pickle planted in the storage cannot run code in a worker; it
    is refused, as is a damaged file, with a one-line error naming the file."""
    import torch

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


def restore(make: Callable[[], Any], checkpoint: tune.Checkpoint) -> tuple[Any, str | None]:
    """A trainer (`make()`) holding the trial's newest usable kept checkpoint.

    Tune hands over the newest checkpoint; when that one is damaged, not plain data, or does
    not fit the method, the earlier ones Tune kept beside it (`CheckpointConfig.num_to_keep`)
    are tried, newest first, and when none is usable the trial starts from scratch. Either
    way the trial goes on (a damaged file would otherwise fail it on every resume), and the
    returned note says what happened (None when the newest checkpoint loaded).
    """
    trainer = make()
    problems = []
    for candidate in [checkpoint, *_earlier(checkpoint)]:
        name = Path(candidate.path).name
        try:
            with candidate.as_directory() as folder:
                state = load_state(Path(folder) / STATE_FILE)
        except UserError as exc:
            problems.append(f"{name}: {exc.message}")
            continue
        try:
            trainer.load_state_dict(state)
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
            problems.append(f"{name}: does not fit the method ({type(exc).__name__})")
            trainer = make()  # a load that failed half-way leaves nothing behind
            continue
        return trainer, f"{'; '.join(problems)}; resumed from {name}" if problems else None
    return trainer, f"{'; '.join(problems)}; no readable checkpoint kept: restarted from scratch"


def _earlier(checkpoint: tune.Checkpoint) -> list[tune.Checkpoint]:
    """The checkpoints Tune kept before `checkpoint` in the same trial directory, newest first."""
    import pyarrow.fs

    parent, name = checkpoint.path.rstrip("/").rsplit("/", 1)
    infos = checkpoint.filesystem.get_file_info(pyarrow.fs.FileSelector(parent))
    kept = (i.base_name for i in infos if i.base_name.startswith("checkpoint_"))
    names = sorted((n for n in kept if n < name), reverse=True)
    return [tune.Checkpoint(f"{parent}/{n}", filesystem=checkpoint.filesystem) for n in names]


def run_trial(
    config: dict[str, Any],
    *,
    features: dict[str, FeatureSet],
    method: str,
    base_config: dict[str, Any],
    epochs: int,
    threads: int,
    policy: CheckpointPolicy,
    deterministic: bool = False,
) -> None:
    """Train one trial, resuming from Tune's checkpoint if there is one; report every epoch,
    with a checkpoint on the epochs `policy` says.

    `features` (one FeatureSet per data variant, keyed by `data_key`) arrive through
    `tune.with_parameters`: as references to the feature cache, which the trial maps read-only,
    or as copies in Ray's object store (`runner.transported`); trials never compute features.
    Figures are drawn by the driver at the end, for the trials that need them
    (`sweep/figures.py`).

    `deterministic` (a reproducible search): torch's deterministic algorithms (with cuBLAS's
    fixed workspace on a GPU); an operation that has none warns instead of failing, and its
    name is reported once under `NONDETERMINISTIC_KEY` (the run's `sweep.nondeterministic`).
    """
    import torch

    from sedsweep.loop import run_epochs
    from sedsweep.methods import get_method
    from sedsweep.methods.base import pick_device

    torch.set_num_threads(threads)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before CUDA starts
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    method_cls = get_method(method)
    cfg = trial_method_config(method_cls, base_config, config["overrides"], epochs)
    fs, device = features[data_key(config["overrides"])], pick_device(None)
    checkpoint = tune.get_checkpoint()
    note = None
    if checkpoint is None:
        trainer = method_cls(cfg, fs, device)
    else:
        trainer, note = restore(lambda: method_cls(cfg, fs, device), checkpoint)

    node = ray.get_runtime_context().get_node_id()
    last_saved = time.monotonic()

    def report(epoch: int, metrics: dict[str, float]) -> None:
        nonlocal note, last_saved
        result: dict[str, Any] = {**metrics, NODE_KEY: node}
        if note:
            result[RESTORE_NOTE_KEY], note = note, None
        if pinned(flagged):
            result[NONDETERMINISTIC_KEY] = "; ".join(sorted(flagged))
        if not policy.due(epoch, time.monotonic() - last_saved, cfg.epochs):
            tune.report(result)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(trainer.state_dict(), Path(folder) / STATE_FILE)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))
        last_saved = time.monotonic()

    flagged: set[str] = set()
    with _nondeterminism(deterministic) as pinned:
        run_epochs(trainer, cfg.epochs, on_epoch=report)


@contextlib.contextmanager
def _nondeterminism(deterministic: bool) -> Iterator[Callable[[set[str]], bool]]:
    """In a deterministic trial, torch's warnings about operations without a deterministic
    kernel are collected (every other warning is shown as usual); yields `pinned(flagged)`,
    which adds the operations warned about since its last call to `flagged` and says whether
    there were new ones. Outside one, nothing is collected."""
    if not deterministic:
        yield lambda flagged: False
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        seen = 0

        def pinned(flagged: set[str]) -> bool:
            nonlocal seen
            new, seen = caught[seen:], len(caught)
            before = len(flagged)
            for w in new:
                text = str(w.message)
                if "deterministic" in text:
                    flagged.add(text.split(" does not have")[0])
                else:
                    print(warnings.formatwarning(w.message, w.category, w.filename, w.lineno),
                          end="", file=sys.stderr)  # fmt: skip
            return len(flagged) > before

        yield pinned
