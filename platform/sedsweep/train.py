"""One training run without Ray: get corpus and features of a resolved run spec, train, track.

The run spec itself (`RunSpec`, `resolve`, `corpus_for`) is `sedsweep.runspec`; the epoch loop is
`sedsweep.loop`, shared with the Ray trainable.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from sedsweep.config import DEFAULT_WORKDIR
from sedsweep.errors import UserError
from sedsweep.features import FeatureSet, build_features
from sedsweep.fsio import atomic_file, writable_dir, write_yaml
from sedsweep.methods.base import Method, pick_device, render_artifacts
from sedsweep.processes import terminate_as_interrupt
from sedsweep.runspec import Resolved, check_corpus, corpus_for


@dataclass
class TrainResult:
    """What a finished run leaves behind."""

    metrics: dict[str, float]
    run_id: str
    run_dir: Path
    tracking_uri: str
    model_uri: str | None = None


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` inside the block (None: left as they are)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(
    resolved: Resolved,
    *,
    workdir: Path = DEFAULT_WORKDIR,
    tracking_uri: str | None = None,
    device: str | None = None,
    experiment: str | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    tags: Mapping[str, str] | None = None,
    log_model: bool = False,
    threads: int | None = None,
    run_name: str | None = None,
) -> TrainResult:
    """Run the epoch loop once, logging params, per-epoch metrics and artifacts to MLflow.

    With `log_model` the trained network is also logged with `mlflow.pytorch.log_model`.
    `run_name` (default `<method>-<scale>-seed<seed>`) names the MLflow run.
    `threads`: torch's threads while it trains (a sweep trial's, for `best`'s retrain; torch's
    default, every core, otherwise), set back after.
    """

    from sedsweep.loop import run_epochs
    from sedsweep.tracking import (
        DEVICE_TAG,
        FIGURES_DIR,
        RunWriter,
        artifact_root_for,
        client_for,
        ensure_experiment,
        flat_params,
        log_torch_model,
        run_tags,
        tracking_uri_for,
    )

    workdir = writable_dir(workdir, "--workdir")
    corpus = corpus_for(resolved, workdir)
    check_corpus(resolved, corpus, "config")  # before any feature is extracted
    features = build_features(
        corpus, resolved.feature_params, workdir / "feature-cache", progress=progress
    )
    dev = pick_device(device)
    method = _build(resolved, features, dev)

    uri = tracking_uri_for(workdir, tracking_uri)
    client = client_for(uri)
    exp_name = experiment or f"train-{resolved.spec.method}"
    exp_id = ensure_experiment(client, exp_name, artifact_root_for(uri))
    spec = resolved.to_spec(corpus.root)
    run = RunWriter.start(
        client,
        exp_id,
        run_name=run_name
        or f"{resolved.spec.method}-{resolved.spec.scale}-seed{resolved.config.seed}",
        tags={
            **run_tags(resolved.spec.method, resolved.spec.scale, features.corpus_fingerprint),
            DEVICE_TAG: str(dev),
            **(tags or {}),
        },
    )
    run_dir = workdir / "runs" / run.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    with terminate_as_interrupt():  # SIGTERM ends the run KILLED, as Ctrl-C does
        try:
            run.log_params(flat_params({"method": resolved.spec.method, **spec["config"]}))
            run.log_params(flat_params({"features": spec["features"]["overrides"]}))
            write_yaml(run_dir / "run.yaml", spec)

            def log_epoch(epoch: int, metrics: dict[str, float]) -> None:
                run.log_metrics(metrics, step=epoch)
                if on_epoch is not None:
                    on_epoch(epoch, metrics)

            with torch_threads(threads):
                metrics = run_epochs(method, resolved.config.epochs, on_epoch=log_epoch)
            save_checkpoint(method, run_dir / "checkpoint.pt")
            figures = run_dir / FIGURES_DIR
            figures.mkdir(exist_ok=True)
            render_artifacts(method, figures)
            run.log_artifacts(run_dir)
            model_uri = log_torch_model(uri, run.run_id, method.network()) if log_model else None
            run.finish("FINISHED")
        except KeyboardInterrupt:
            run.finish("KILLED")
            raise
        except BaseException:
            run.finish("FAILED")
            raise
    return TrainResult(metrics, run.run_id, run_dir, uri, model_uri)


def _build(resolved: Resolved, features: FeatureSet, device: torch.device) -> Method:
    try:
        method = resolved.method_cls(resolved.config, features, device)
    except ValueError as exc:  # e.g. a split naming folds the corpus lacks
        raise UserError(str(exc), where="config") from None
    for note in method.splits.notes(features.weak, features.classes):
        print(f"warning: {note}", file=sys.stderr, flush=True)
    return method


def save_checkpoint(method: Method, path: Path) -> None:
    """Save the method's state atomically (torch.save to a temp file, then rename)."""
    with atomic_file(path, "wb") as handle:
        torch.save(method.state_dict(), handle)
