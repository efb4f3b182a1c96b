"""Run specs: what defines one training run, validated against its method before any compute.

A run spec (YAML for `sedsweep train --config FILE`, and what `best.yaml` holds) is:

    method: whenwho
    scale: tiny                      # a named size of the method: tiny | small | paper
    data: {path: DIR}                # or {synthetic: lowres, options: {clips: 60, seed: 0}}
    features: {preset: morfi2018, overrides: {n_mels: 40}}
    config: {mode: tied, mmm: {w_max: 0.5}}

`resolve` validates a spec (the method's defaults ← its scale ← the spec's config) into a
`Resolved` run; `corpus_for` loads its corpus, or generates the method's synthetic one once.
Methods are found by name in the registry, so this layer imports no method and no torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from sedsweep.config import Strict, deep_merge, load_yaml, set_dotted, validate, with_overrides
from sedsweep.data.audio import read_audio
from sedsweep.data.corpus import META_FILE, Corpus
from sedsweep.errors import UserError, unknown_name
from sedsweep.features import FeatureParams, resolve_params
from sedsweep.methods import get_method
from sedsweep.progress import phase

if TYPE_CHECKING:
    from sedsweep.data.splits import Splits
    from sedsweep.methods.base import Method, MethodConfig, Scale


class RemixSource(Strict):
    """Your own isolated events (class sub-folders) mixed into your own background recordings
    at one SNR, by `data remix`'s procedure, built once into the workdir at the features'
    sample rate. Paths are relative to where sedsweep runs."""

    events: str
    backgrounds: str
    snr_db: float = 0.0
    clips: int | None = Field(default=None, ge=1, description="None: event files // per clip")
    folds: int = Field(default=4, ge=1)
    seed: int = Field(default=0, ge=0)
    clip_s: float = Field(default=10.0, gt=0)
    max_event_s: float = Field(default=2.0, gt=0)
    events_per_clip: int = Field(default=3, ge=1)


class DataSpec(Strict):
    """Where the corpus comes from: a directory, a synthetic generator and its options, or a
    remix of your own recordings."""

    path: str | None = None
    synthetic: str | None = Field(default=None, description="default: the method's own kind")
    options: dict[str, Any] = Field(default_factory=dict)
    remix: RemixSource | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if self.remix is not None and (self.path or self.synthetic):
            raise ValueError("remix is a data source of its own: not with path or synthetic")
        return self


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

    def to_spec(self, corpus_dir: Path | None = None) -> dict[str, Any]:
        """A run spec with every config and feature field spelled out.

        With `corpus_dir` the data is that directory (the exact corpus a run used); without,
        the data source as the spec declared it (portable: a synthetic corpus is regenerated).
        """
        data = (
            {"path": str(corpus_dir.resolve())}
            if corpus_dir is not None
            else self.spec.data.model_dump(mode="json", exclude_none=True)
        )
        return {
            "method": self.spec.method,
            "scale": self.spec.scale,
            "data": data,
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


COMMAND_LINE = ("run spec", "command line")  # `where`s of specs built from options, not files


def resolve(spec: RunSpec, where: str = "run spec", section: str = "config") -> Resolved:
    """Validate the method config (defaults ← scale ← spec) and the feature parameters.

    Config errors name `where` and `section` (the key the config came from in the file).
    """
    try:
        method_cls = get_method(spec.method)
    except UserError as exc:  # a file's `method:`, not the command line's, when from a file
        if where in COMMAND_LINE:
            raise
        raise UserError(exc.message, where=f"{where}: method") from None
    if spec.scale not in method_cls.scales:
        raise UserError(unknown_name("scale", spec.scale, method_cls.scales), where="--scale")
    scale = method_cls.scales[spec.scale]
    merged = deep_merge(with_overrides({}, scale.config), spec.config)
    config = validate(method_cls.Config, merged, f"{where}: {section}")
    preset = spec.features.preset or method_cls.feature_preset
    params = resolve_params(
        preset,
        {**scale.features, **spec.features.overrides},
        "--set" if where in COMMAND_LINE else f"{where}: features",
    )
    return Resolved(spec, method_cls, scale, config, params)


def split_error(exc: ValueError, clip_folds: Any, where: str) -> UserError:
    """A method's refusal of a corpus's splits as one line naming the corpus's folds."""
    folds = sorted({int(f) for f in clip_folds})
    return UserError(
        f"{exc} (the corpus has {len(clip_folds)} clips in folds {folds})", where=f"{where}: split"
    )


def check_corpus(resolved: Resolved, corpus: Corpus, where: str) -> Splits:
    """The run's splits of `corpus`, from its manifest alone, checked as the method will check
    them (folds it lacks, an empty training split, `Method.check_data`): a UserError before any
    feature is extracted or any trial starts."""
    import numpy as np

    from sedsweep.data.splits import resolve_splits

    folds = np.array([c.fold for c in corpus.clips], dtype=np.int64)
    verified = np.array([c.verified for c in corpus.clips], dtype=bool)
    try:
        splits = resolve_splits(folds, resolved.config.split, resolved.config.splitting_seed)
        resolved.method_cls.check_data(resolved.config, splits, verified)
    except ValueError as exc:
        raise split_error(exc, folds, where) from None
    return splits


SAMPLE_CHECK_BYTES = 256 << 20  # audio that `--dry-run` reads whole (about a second per 100 MB)


def check_samples(corpus: Corpus) -> str:
    """For `--dry-run`: read every clip's samples when the corpus's audio is at most
    `SAMPLE_CHECK_BYTES` (a NaN or infinite sample is a UserError naming the file, as when
    features are extracted); a larger corpus is said to be checked then, which is still
    before Ray starts and before any run exists."""
    paths = sorted({corpus.audio_path(clip) for clip in corpus.clips})
    size = sum(p.stat().st_size for p in paths)
    if size > SAMPLE_CHECK_BYTES:
        return (f"{size / 2**20:.0f} MB, checked for NaN and infinite values when features "
                "are extracted (before Ray starts)")  # fmt: skip
    for path in paths:
        read_audio(path)
    return f"{size / 2**20:.1f} MB read: all finite"


def check_sources(data: DataSpec, where: str) -> None:
    """The paths a run reads its data from exist (`data.path`, `data.remix.events` and
    `.backgrounds`): a missing one is a one-line UserError naming its key, before anything is
    built. Paths through a `shared` folder are those of the files shipped with sedsweep that
    read the real recordings of `../shared/realaudio` beside a checkout: the message says so,
    and what runs without them."""
    paths = [("path", data.path, "corpus directory")] if data.path else []
    if data.remix is not None:
        paths += [
            ("remix.events", data.remix.events, "events folder"),
            ("remix.backgrounds", data.remix.backgrounds, "backgrounds folder"),
        ]
    for key, value, what in paths:
        if Path(value).exists() or Path(value).is_symlink():  # a bad link: its loader says how
            continue
        shared = (
            "; this file reads the shared real recordings beside a sedsweep checkout (run it "
            "from the repository root with ../shared next to it), or drop its `data` section "
            "to run on the method's synthetic corpus"
            if "shared" in Path(value).parts
            else ""
        )
        raise UserError(
            f"{what} not found: {value} (looked in {Path(value).resolve()}){shared}",
            where=f"{where}: data.{key}",
        )


def describe_data(resolved: Resolved, where: str) -> list[str]:
    """What a run reads, for `--dry-run`: the data source; for a corpus directory its name,
    fingerprint and clips per split (checked by `check_corpus`); the feature parameters and
    what the scale changed."""
    data = resolved.spec.data
    check_sources(data, where)
    if data.path:
        corpus = Corpus.load(data.path)
        splits = check_corpus(resolved, corpus, where)
        sizes = ", ".join(f"{name} {len(splits[name])}" for name in ("train", "val", "test"))
        lines = [
            f"data: {Path(data.path).resolve()}: corpus {corpus.name!r} "
            f"(fingerprint {corpus.fingerprint()}), {len(corpus.clips)} clips in folds "
            f"{corpus.folds}, {len(corpus.classes)} classes",
            f"  clips per split: {sizes}",
            *(f"  warning: {n}" for n in splits.notes(corpus.weak_labels(), corpus.classes)),
            f"  audio samples: {check_samples(corpus)}",
        ]
    elif data.remix is not None:
        r = data.remix
        clips = r.clips or f"event files // {r.events_per_clip}"
        lines = [
            f"data: remix of {Path(r.events).resolve()} into {Path(r.backgrounds).resolve()} "
            f"at {r.snr_db:g} dB ({clips} clips, {r.folds} folds), built into the workdir on "
            "first use"
        ]
    else:
        kind = data.synthetic or resolved.method_cls.synthetic_kind
        options = {**resolved.scale.corpus, **data.options}
        lines = [f"data: synthetic {kind!r} {options}, generated into the workdir on first use"]
    params = resolved.feature_params.model_dump(mode="json", exclude_none=True)
    lines.append("features: " + ", ".join(f"{k} {v}" for k, v in params.items()))
    scale = resolved.scale
    changed = {"config": scale.config, "features": scale.features}
    if not (data.path or data.remix):  # the synthetic generator's options
        changed["corpus"] = scale.corpus
    changes = "; ".join(f"{k} {v}" for k, v in changed.items() if v) or "nothing"
    lines.append(f"scale {resolved.spec.scale!r} sets: {changes}")
    return lines


def corpus_for(resolved: Resolved, workdir: Path) -> Corpus:
    """Load the spec's corpus, or make its remix or the method's synthetic one once into the
    workdir."""
    data = resolved.spec.data
    check_sources(data, "data")
    if data.path:
        return Corpus.load(data.path)
    if data.remix is not None:
        return _remix_corpus(data.remix, resolved.feature_params.sr, workdir)
    from sedsweep.data.synth import GENERATORS

    kind = data.synthetic or resolved.method_cls.synthetic_kind
    if kind not in GENERATORS:
        raise UserError(
            unknown_name("synthetic corpus", kind, GENERATORS),
            where="data.synthetic",
        )
    options = {**resolved.scale.corpus, **data.options}
    out = workdir / "corpora" / f"{kind}-{_digest(options)}"
    if not (out / META_FILE).exists():
        try:
            with phase(f"making the synthetic {kind!r} corpus into {out}"):
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


def _digest(options: dict[str, Any]) -> str:
    """A short stable name for a corpus made from `options`."""
    return hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[
        :10
    ]


def _remix_corpus(remix: RemixSource, sr: int, workdir: Path) -> Corpus:
    """The remix `remix` asks for, at `sr`, made once into `workdir/corpora/remix-…`."""
    from sedsweep.data.importers import remix_user

    events, backgrounds = Path(remix.events).resolve(), Path(remix.backgrounds).resolve()
    options = {**remix.model_dump(), "events": str(events), "backgrounds": str(backgrounds)}
    out = workdir / "corpora" / f"remix-{_digest({**options, 'sr': sr})}"
    if not (out / META_FILE).exists():
        with phase(f"remixing {events} into {backgrounds}: {out}"):
            remix_user(
                events, backgrounds, out, snr_db=[remix.snr_db], clips=remix.clips,
                clip_s=remix.clip_s, max_event_s=remix.max_event_s,
                events_per_clip=remix.events_per_clip, folds=remix.folds, sr=sr, seed=remix.seed,
            )  # fmt: skip
    return Corpus.load(out)
