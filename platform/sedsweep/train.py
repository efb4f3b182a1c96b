"""One training run without Ray: resolve the run spec, get corpus and features, train, track.

A run spec (YAML for `sedsweep train --config FILE`, and what `best.yaml` holds) is:

    method: whenwho
    scale: tiny                      # a named size of the method: tiny | small | paper
    data: {path: DIR}                # or {synthetic: lowres, options: {clips: 60, seed: 0}}
    features: {preset: morfi2018, overrides: {n_mels: 40}}
    config: {mode: tied, mmm: {w_max: 0.5}}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import Field

from sedsweep.config import deep_merge, load_yaml, set_dotted, validate, with_overrides
from sedsweep.data.corpus import META_FILE, Corpus
from sedsweep.errors import UserError
from sedsweep.features import FeatureParams, FeatureSet, build_features, resolve_params
from sedsweep.fsio import atomic_file
from sedsweep.methods import get_method
from sedsweep.methods.base import Method, MethodConfig, Scale, Strict, pick_device

DEFAULT_WORKDIR = Path("sedsweep-runs")


class DataSpec(Strict):
    """Where the corpus comes from: a directory, or a synthetic generator and its options."""

    path: str | None = None
    synthetic: str | None = Field(default=None, description="default: the method's own kind")
    options: dict[str, Any] = Field(default_factory=dict)


class FeatureSpec(Strict):
    """A feature preset (default: the method's) and field overrides."""

    preset: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)


class RunSpec(Strict):
    """Everything that defines a training run."""

    method: str
    scale: str = "paper"
    data: DataSpec = Field(default_factory=DataSpec)
    features: FeatureSpec = Field(default_factory=FeatureSpec)
    config: dict[str, Any] = Field(default_factory=dict)


@dataclass
class Resolved:
    """A validated run: method class, its config, feature parameters and data source."""

    spec: RunSpec
    method_cls: type[Method]
    scale: Scale
    config: MethodConfig
    feature_params: FeatureParams

    def complete_spec(self, corpus_dir: Path) -> dict[str, Any]:
        """A spec that reproduces this run exactly (every config and feature field spelled out)."""
        return {
            "method": self.spec.method,
            "scale": self.spec.scale,
            "data": {"path": str(corpus_dir.resolve())},
            "features": {
                "preset": self.spec.features.preset or self.method_cls.feature_preset,
                "overrides": self.feature_params.model_dump(mode="json"),
            },
            "config": self.config.model_dump(mode="json"),
        }


def spec_from_cli(
    config_file: Path | None,
    method: str | None,
    data: Path | None,
    scale: str | None,
    overrides: Mapping[str, Any],
) -> RunSpec:
    """Merge a spec file, command-line options and `--set` overrides into a validated RunSpec.

    `--set` keys go into the method config, except `features.X` (feature overrides) and
    `data.X` (data spec).
    """
    where = str(config_file) if config_file else "command line"
    raw: dict[str, Any] = load_yaml(config_file) if config_file else {}
    if method:
        if raw.get("method") not in (None, method):
            raise UserError(f"--method {method} contradicts method {raw['method']!r}", where=where)
        raw["method"] = method
    if "method" not in raw:
        raise UserError("no method given (use --method or a 'method:' key)", where=where)
    if data is not None:
        raw["data"] = {"path": str(data)}
    if scale:
        raw["scale"] = scale
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head == "features" and rest:
            set_dotted(raw, f"features.overrides.{rest}", value)
        elif head == "data" and rest:
            set_dotted(raw, key, value)
        else:
            set_dotted(raw, f"config.{key}", value)
    return validate(RunSpec, raw, where)


def resolve(spec: RunSpec, where: str = "run spec", section: str = "config") -> Resolved:
    """Validate the method config (defaults ← scale ← spec) and the feature parameters.

    Config errors name `where` and `section` (the key the config came from in the file).
    """
    method_cls = get_method(spec.method)
    if spec.scale not in method_cls.scales:
        known = ", ".join(method_cls.scales)
        raise UserError(
            f"unknown scale {spec.scale!r} for {spec.method} (known: {known})", where="--scale"
        )
    scale = method_cls.scales[spec.scale]
    merged = deep_merge(with_overrides({}, scale.config), spec.config)
    config = validate(method_cls.Config, merged, f"{where}: {section}")
    preset = spec.features.preset or method_cls.feature_preset
    params = resolve_params(preset, {**scale.features, **spec.features.overrides})
    return Resolved(spec, method_cls, scale, config, params)


def corpus_for(resolved: Resolved, workdir: Path) -> Corpus:
    """Load the spec's corpus, or generate the method's synthetic one once into the workdir."""
    data = resolved.spec.data
    if data.path:
        return Corpus.load(data.path)
    from sedsweep.data.synth import GENERATORS

    kind = data.synthetic or resolved.method_cls.synthetic_kind
    if kind not in GENERATORS:
        raise UserError(
            f"unknown synthetic corpus {kind!r} (known: {', '.join(GENERATORS)})",
            where="data.synthetic",
        )
    options = {**resolved.scale.corpus, **data.options}
    digest = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[
        :10
    ]
    out = workdir / "corpora" / f"{kind}-{digest}"
    if not (out / META_FILE).exists():
        try:
            made = GENERATORS[kind](out, **options)
        except TypeError as exc:
            raise UserError(
                f"bad generator option for {kind!r}: {exc}", where="data.options"
            ) from None
        if isinstance(made, list) and len(made) != 1:
            raise UserError(
                "training needs one corpus: give a single SNR", where="data.options.snr_db"
            )
    return Corpus.load(out)


@dataclass
class TrainResult:
    """What a finished run leaves behind."""

    metrics: dict[str, float]
    run_id: str
    run_dir: Path
    tracking_uri: str
    model_uri: str | None = None


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
) -> TrainResult:
    """Run the epoch loop once, logging params, per-epoch metrics and artifacts to MLflow.

    With `log_model` the trained network is also logged with `mlflow.pytorch.log_model`.
    """
    from sedsweep import __version__
    from sedsweep.loop import run_epochs
    from sedsweep.tracking import (
        FIGURES_DIR,
        RunWriter,
        client_for,
        ensure_experiment,
        flat_params,
        local_artifact_root,
        log_torch_model,
        tracking_uri_for,
    )

    workdir.mkdir(parents=True, exist_ok=True)
    corpus = corpus_for(resolved, workdir)
    features = build_features(
        corpus, resolved.feature_params, workdir / "feature-cache", progress=progress
    )
    dev = pick_device(device)
    method = _build(resolved, features, dev)

    uri = tracking_uri_for(workdir, tracking_uri)
    client = client_for(uri)
    exp_name = experiment or f"train-{resolved.spec.method}"
    exp_id = ensure_experiment(client, exp_name, local_artifact_root(uri, workdir))
    spec = resolved.complete_spec(corpus.root)
    run = RunWriter.start(
        client,
        exp_id,
        run_name=f"{resolved.spec.method}-{resolved.spec.scale}-seed{resolved.config.seed}",
        tags={
            "sedsweep.version": __version__,
            "sedsweep.method": resolved.spec.method,
            "sedsweep.scale": resolved.spec.scale,
            "sedsweep.corpus_fingerprint": features.corpus_fingerprint,
            "sedsweep.device": str(dev),
            **(tags or {}),
        },
    )
    run_dir = workdir / "runs" / run.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        run.log_params(flat_params({"method": resolved.spec.method, **spec["config"]}))
        run.log_params(flat_params({"features": spec["features"]["overrides"]}))
        _write_yaml(run_dir / "run.yaml", spec)

        def log_epoch(epoch: int, metrics: dict[str, float]) -> None:
            run.log_metrics(metrics, step=epoch)
            if on_epoch is not None:
                on_epoch(epoch, metrics)

        metrics = run_epochs(method, resolved.config.epochs, on_epoch=log_epoch)
        save_checkpoint(method, run_dir / "checkpoint.pt")
        figures = run_dir / FIGURES_DIR
        figures.mkdir(exist_ok=True)
        method.artifacts(figures)
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
        return resolved.method_cls(resolved.config, features, device)
    except ValueError as exc:  # e.g. a split naming folds the corpus lacks
        raise UserError(str(exc), where="config") from None


def save_checkpoint(method: Method, path: Path) -> None:
    """Save the method's state atomically (torch.save to a temp file, then rename)."""
    with atomic_file(path, "wb") as handle:
        torch.save(method.state_dict(), handle)


def _write_yaml(path: Path, data: Mapping[str, Any]) -> None:
    with atomic_file(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(dict(data), handle, sort_keys=False)
