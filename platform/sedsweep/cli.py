"""The `sedsweep` command: parses arguments, calls the library, prints results."""

from __future__ import annotations

import gc
import json
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sedsweep import __version__
from sedsweep.config import DEFAULT_WORKDIR
from sedsweep.errors import UserError
from sedsweep.methods import method_names
from sedsweep.progress import Progress

if TYPE_CHECKING:
    from sedsweep.report.runs import SweepRuns

app = typer.Typer(
    help="Sweeps for weakly-labelled sound event detection and audio tagging.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Make, import, remix and inspect corpora.", no_args_is_help=True)
import_app = typer.Typer(help="Write a manifest for a real corpus (audio is not copied).")
app.add_typer(data_app, name="data")
data_app.add_typer(import_app, name="import")

# Options that take several space-separated values (`--snr 0 10 20`).
MULTI_VALUE_OPTIONS = ("--snr",)


class Kind(StrEnum):
    lowres = "lowres"
    noisy = "noisy"
    remix = "remix"


class CorpusScale(StrEnum):
    paper = "paper"
    small = "small"
    tiny = "tiny"


class Layout(StrEnum):
    subdirs = "subdirs"
    column = "column"


Out = Annotated[Path, typer.Option("--out", help="Output corpus directory.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out.")]
Snr = Annotated[list[str], typer.Option("--snr", help="One or more SNRs in dB: --snr 0 10 20.")]
Strict = Annotated[
    bool, typer.Option("--strict", help="Refuse events past their clip's end (default: cut).")
]
CorpusName = Annotated[
    str | None,
    typer.Option(
        "--name",
        help="Corpus name (default: the --out folder's name; nips4b and fsdkaggle2019: theirs).",
    ),
]


def _report(corpora: list, started: float) -> None:
    for corpus in corpora:
        typer.echo(
            f"wrote {corpus.root}: {len(corpus.clips)} clips, {len(corpus.classes)} classes, "
            f"folds {corpus.folds}, {len(corpus.events or [])} strong events"
        )
        for file, separator in corpus.generator.get("label_separators", {}).items():
            typer.echo(f"{file}: labels separated by {separator!r}")
        clipped = corpus.generator.get("events_clipped", 0)
        dropped = corpus.generator.get("events_dropped", 0)
        if clipped or dropped:
            typer.echo(
                f"warning: {clipped} event(s) ran past their clip's end and were cut there, "
                f"{dropped} started beyond it and were dropped (--strict refuses them)",
                err=True,
            )
    typer.echo(f"done in {time.perf_counter() - started:.1f} s")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"sedsweep {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print version."),
    ] = None,
) -> None:
    """sedsweep: sweeps for weakly-labelled SED and audio tagging."""


@data_app.command("make")
def data_make(
    kind: Annotated[
        Kind,
        typer.Argument(
            help="lowres (NIPS4B-like), noisy (FSDKaggle2019-like), remix (2APAE-like)."
        ),
    ],
    out: Out,
    scale: Annotated[
        CorpusScale, typer.Option(help="Preset size; paper = the paper's corpus size.")
    ] = CorpusScale.paper,
    clips: Annotated[
        int | None, typer.Option(min=1, help="Number of clips (overrides the scale).")
    ] = None,
    classes: Annotated[int | None, typer.Option(min=2, help="Number of classes.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same corpus.")] = 0,
    sr: Annotated[
        int | None, typer.Option(min=1000, help="Sample rate (default per kind).")
    ] = None,
    snr: Snr = None,  # type: ignore[assignment]
    layout: Annotated[
        Layout, typer.Option(help="remix with several SNRs: subdirs or one snr_db column.")
    ] = Layout.subdirs,
    noise_rate: Annotated[
        float | None, typer.Option(help="noisy: share of unverified clips with wrong labels.")
    ] = None,
    verified_fraction: Annotated[
        float | None, typer.Option(help="noisy: share of verified clips.")
    ] = None,
    min_duration: Annotated[float | None, typer.Option(help="noisy: shortest clip (s).")] = None,
    max_duration: Annotated[float | None, typer.Option(help="noisy: longest clip (s).")] = None,
    variant: Annotated[
        str | None,
        typer.Option(help="lowres: calibrated (default) or hard (quiet calls, distractors)."),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Generate a deterministic synthetic corpus (WAVs, clips.csv, events.tsv, corpus.json)."""
    from sedsweep.data.synth import GENERATORS

    options: dict = {"scale": scale.value, "clips": clips, "classes": classes, "seed": seed}
    if sr is not None:
        options["sr"] = sr
    noisy_only = {
        "noise_rate": noise_rate,
        "verified_fraction": verified_fraction,
        "min_duration": min_duration,
        "max_duration": max_duration,
    }
    for name, value in noisy_only.items():
        if value is not None:
            if kind is not Kind.noisy:
                raise UserError(
                    f"only applies to 'noisy', not {kind.value!r}",
                    where=f"--{name.replace('_', '-')}",
                )
            options[name] = value
    if variant is not None:
        if kind is not Kind.lowres:
            raise UserError(f"only applies to 'lowres', not {kind.value!r}", where="--variant")
        options["variant"] = variant
    if snr:
        if kind is not Kind.remix:
            raise UserError(f"only applies to 'remix', not {kind.value!r}", where="--snr")
        options["snr_db"] = tuple(snr)
    if kind is Kind.remix:
        options["layout"] = layout.value
    started = time.perf_counter()
    result = GENERATORS[kind.value](out, overwrite=overwrite, **options)
    _report(result if isinstance(result, list) else [result], started)


@import_app.command("nips4b")
def import_nips4b(
    src: Annotated[Path, typer.Argument(help="NIPS4B 2013 folder (see README).")],
    out: Out,
    train_count: Annotated[
        int, typer.Option(min=1, help="Clips in the training fold (paper: 499 + 14).")
    ] = 513,
    strict: Strict = False,
    name: CorpusName = None,
    overwrite: Overwrite = False,
) -> None:
    """Import the NIPS4B 2013 bird corpus (with NIPS4Bplus strong labels when present)."""
    from sedsweep.data.importers import import_nips4b as run

    started = time.perf_counter()
    corpus = run(src, out, train_count=train_count, overwrite=overwrite, strict=strict, name=name)
    _report([corpus], started)


@import_app.command("fsdkaggle2019")
def import_fsdkaggle2019(
    src: Annotated[Path, typer.Argument(help="FSDKaggle2019 folder, Zenodo or Kaggle layout.")],
    out: Out,
    noisy: Annotated[
        bool, typer.Option("--noisy/--no-noisy", help="Include the noisy subset.")
    ] = True,
    name: CorpusName = None,
    overwrite: Overwrite = False,
) -> None:
    """Import FSDKaggle2019 (curated = verified, noisy = unverified, test = fold 2)."""
    from sedsweep.data.importers import import_fsdkaggle2019 as run

    started = time.perf_counter()
    _report([run(src, out, include_noisy=noisy, overwrite=overwrite, name=name)], started)


@import_app.command("dcase")
def import_dcase(
    src: Annotated[Path, typer.Argument(help="Folder of audio plus DCASE metadata TSV/CSV.")],
    out: Out,
    meta: Annotated[
        list[Path] | None, typer.Option("--meta", help="Metadata file; repeat for folds 1, 2, ...")
    ] = None,
    audio_dir: Annotated[
        Path | None, typer.Option(help="Where the audio is (default: searched in SRC).")
    ] = None,
    name: CorpusName = None,
    strict: Strict = False,
    overwrite: Overwrite = False,
) -> None:
    """Import a DCASE-style corpus with strong and/or weak labels (a fold column, if every
    metadata file has one, gives the folds; else file i is fold i)."""
    from sedsweep.data.importers import import_dcase as run

    started = time.perf_counter()
    corpus = run(
        src, out, meta=meta or None, audio_dir=audio_dir, overwrite=overwrite, name=name,
        strict=strict,
    )  # fmt: skip
    _report([corpus], started)


@import_app.command("table")
def import_table(
    table: Annotated[Path, typer.Argument(help="CSV/TSV: a row per file (and per event).")],
    out: Out,
    audio_dir: Annotated[
        Path | None,
        typer.Option(help="Where the audio is (default: searched under the table's folder)."),
    ] = None,
    name: CorpusName = None,
    strict: Strict = False,
    overwrite: Overwrite = False,
) -> None:
    """Import one table of audio files with weak labels (and optional strong events and a
    fold column), read as DCASE metadata: file|path|filename, labels, onset, offset, label,
    fold in any case; other columns ignored."""
    src = audio_dir if audio_dir is not None else table.parent
    import_dcase(src, out, [table], audio_dir, name, strict, overwrite)


@data_app.command("remix")
def data_remix(
    events: Annotated[Path, typer.Option(help="Isolated events: class sub-folders, or a corpus.")],
    backgrounds: Annotated[Path, typer.Option(help="Folder of background recordings.")],
    out: Out,
    snr: Snr = None,  # type: ignore[assignment]
    clips: Annotated[int | None, typer.Option(min=1, help="Mixtures per SNR.")] = None,
    layout: Annotated[
        Layout, typer.Option(help="Several SNRs: subdirs or one snr_db column.")
    ] = Layout.subdirs,
    folds: Annotated[int, typer.Option(min=1, help="Folds to assign round-robin.")] = 4,
    sr: Annotated[int, typer.Option(min=1000, help="Output sample rate.")] = 32000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    overwrite: Overwrite = False,
) -> None:
    """Mix your own isolated events into background scenes at given SNRs (2APAE procedure)."""
    from sedsweep.data.importers import remix_user

    started = time.perf_counter()
    result = remix_user(
        events,
        backgrounds,
        out,
        snr_db=tuple(snr or ["0"]),
        clips=clips,
        layout=layout.value,
        folds=folds,
        sr=sr,
        seed=seed,
        overwrite=overwrite,
    )
    _report(result, started)


@data_app.command("info")
def data_info(
    directory: Annotated[Path, typer.Argument(help="Corpus directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Summarise a corpus: clips, classes, cardinality, per-class counts, durations, folds."""
    from sedsweep.data.corpus import Corpus

    corpus = Corpus.load(directory)
    corpus.check_audio()  # the totals below are the manifest's: they must be the audio's
    info = corpus.summary()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    d = info["duration_s"]
    lines = [
        f"corpus        {info['name']}  ({info['root']})",
        f"clips         {info['clips']}  ({info['negative_clips']} without labels)",
        f"classes       {info['classes']}",
        f"sample rate   {info['sample_rate']} Hz",
        f"labels/clip   {info['label_cardinality']:.2f}  histogram {info['cardinality_histogram']}",
        f"duration      total {d['total']:.1f} s, min {d['min']:.2f}, "
        f"mean {d['mean']:.2f}, max {d['max']:.2f}",
        f"folds         {info['folds']}",
        f"verified      {info['verified_share']:.1%}",
    ]
    if info["strong_events"] is None:
        lines.append("strong events none (weak labels only)")
    else:
        lines.append(
            f"strong events {info['strong_events']} covering {info['strong_coverage']:.1%} of clips"
        )
        weak_only = info["clips"] - info["strong_annotated_clips"]
        if weak_only:
            lines.append(
                f"weak-only     {weak_only} clips (no strong annotation: not frame-scored)"
            )
    if "snr_db" in info:
        lines.append(f"snr_db        {info['snr_db']}")
    counts = sorted(info["per_class_counts"].items(), key=lambda kv: -kv[1])
    lines.append("per class     " + ", ".join(f"{k} {v}" for k, v in counts))
    typer.echo("\n".join(lines))


@app.command("features")
def features(
    directory: Annotated[Path, typer.Argument(help="Corpus directory.")],
    preset: Annotated[
        str, typer.Option(help="morfi2018, he2020 or deshmukh2020.")
    ] = "deshmukh2020",
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a field: --set n_mels=40.")
    ] = None,
    cache: Annotated[
        Path | None, typer.Option(help="Cache directory (default: ~/.cache/sedsweep/features).")
    ] = None,
    jobs: Annotated[
        int | None, typer.Option(min=1, help="Extraction processes (default: all cores).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Build (or load from the cache) the log-mel features of a corpus and describe them."""
    from sedsweep.config import parse_overrides
    from sedsweep.data.corpus import Corpus
    from sedsweep.features import build_features, resolve_params

    params = resolve_params(preset, parse_overrides(set_ or []))
    corpus = Corpus.load(directory)
    started = time.perf_counter()
    fs = build_features(corpus, params, cache, jobs=jobs, progress=not as_json)
    elapsed = time.perf_counter() - started
    lengths = fs.lengths
    info = {
        "corpus": corpus.name,
        "preset": preset,
        "key": fs.key,
        "cache_path": str(fs.cache_path),
        "cache_hit": fs.cache_hit,
        "seconds": round(elapsed, 3),
        "clips": len(fs),
        "n_mels": fs.n_mels,
        "frames": {
            "total": int(lengths.sum()),
            "min": int(lengths.min()),
            "max": int(lengths.max()),
        },
        "params": params.model_dump(mode="json"),
    }
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    state = "cache hit" if fs.cache_hit else "extracted"
    typer.echo(
        f"{state}: {len(fs)} clips, {fs.n_mels} mel bins, "
        f"frames/clip {lengths.min()}-{lengths.max()}, {elapsed:.2f} s\n"
        f"cache entry {fs.cache_path}"
    )


def _epoch_text(epoch: int, metrics: dict[str, float], epochs: int | None) -> str:
    """One trained epoch (of `epochs`, when given): loss, validation metrics, time."""
    vals = "  ".join(f"{k} {v:.3f}" for k, v in sorted(metrics.items()) if k.startswith("val/"))
    of = f"/{epochs}" if epochs else ""
    return (
        f"epoch {epoch}{of}  loss {metrics['train/loss']:.4f}  {vals}  "
        f"({metrics['epoch_time_s']:.1f} s)"
    )


@app.command("train")
def train_cmd(
    method: Annotated[str | None, typer.Option(help=f"Method: {method_names()}.")] = None,
    data: Annotated[
        Path | None, typer.Option(help="Corpus directory (default: the method's synthetic one).")
    ] = None,
    scale: Annotated[str | None, typer.Option(help="tiny | small | paper (default paper).")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override: mmm.w_max=0.5, features.n_mels=64, data.options.clips=80."
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Run spec YAML (e.g. a best.yaml).")] = None,
    workdir: Annotated[
        Path, typer.Option(help="Corpora, feature cache, MLflow store, runs.")
    ] = DEFAULT_WORKDIR,
    tracking_uri: TrackingUri = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: auto).")] = None,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment name.")] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the data, features and config; train nothing."),
    ] = False,
) -> None:
    """Train one method once (no Ray), logging every epoch to MLflow."""
    from sedsweep.config import parse_overrides
    from sedsweep.runspec import describe_data, resolve, spec_from_cli
    from sedsweep.train import train

    spec = spec_from_cli(config, method, data, scale, parse_overrides(set_ or []))
    where = str(config) if config else "command line"
    resolved = resolve(spec, where=where)
    epochs = resolved.config.epochs
    if dry_run:
        import yaml

        typer.echo(f"train {spec.method} at scale {spec.scale} for {epochs} epochs")
        typer.echo("\n".join(describe_data(resolved, where)))
        config_yaml = yaml.safe_dump(resolved.config.model_dump(mode="json"), sort_keys=False)
        typer.echo("config:\n" + "".join(f"  {line}\n" for line in config_yaml.splitlines()))
        return
    typer.echo(f"training {spec.method} at scale {spec.scale} for {epochs} epochs")

    with Progress(epochs, "epochs", "epoch") as progress:
        result = train(
            resolved,
            workdir=workdir,
            tracking_uri=tracking_uri,
            device=device,
            experiment=experiment,
            on_epoch=lambda epoch, metrics: progress.advance(_epoch_text(epoch, metrics, epochs)),
        )
    typer.echo("final metrics:")
    for key, value in sorted(result.metrics.items()):
        if key.startswith(("val/", "test/")):
            typer.echo(f"  {key:<28} {value:.4f}")
    typer.echo(f"MLflow run {result.run_id} in {result.tracking_uri}")
    typer.echo(f"checkpoint and run spec in {result.run_dir}")


Workdir = Annotated[Path, typer.Option(help="Corpora, feature cache, MLflow store, Ray results.")]


def _password_in_argv(value: str | None) -> str | None:
    if value:
        from sedsweep.tracking import carries_password

        if carries_password(value):
            typer.echo(
                "warning: --tracking-uri carries a password, which `ps` shows to every user of "
                "this machine while this runs: set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD instead",
                err=True,
            )
    return value


TrackingUri = Annotated[
    str | None,
    typer.Option(help="MLflow server instead of SQLite.", callback=_password_in_argv),
]
Address = Annotated[str | None, typer.Option(help="Existing Ray cluster (default: local).")]
DrainTimeout = Annotated[
    float,
    typer.Option(
        "--tracking-drain-timeout",
        min=0,
        help="Seconds to wait at the end for the tracking store to take the journal's backlog.",
    ),
]


@app.command("sweep")
def sweep_cmd(
    file: Annotated[Path, typer.Argument(help="Search-space YAML (see search_spaces/).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and print the plan.")
    ] = False,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a file field: budget.trials=4.")
    ] = None,
    scale: Annotated[str | None, typer.Option(help="tiny | small | paper.")] = None,
    workdir: Workdir = DEFAULT_WORKDIR,
    address: Address = None,
    storage: Annotated[str | None, typer.Option(help="Ray storage path (shared FS).")] = None,
    tracking_uri: TrackingUri = None,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline", help="Contact no tracking store: journal only (`sedsweep sync` later)."
        ),
    ] = False,
    drain_timeout: DrainTimeout = 120.0,
) -> None:
    """Run a hyperparameter sweep on Ray Tune, searched by Optuna, tracked in MLflow."""
    from sedsweep.config import parse_overrides
    from sedsweep.sweep.spec import load_sweep

    plan = load_sweep(file, parse_overrides(set_ or []), scale)
    if dry_run:
        typer.echo(plan.describe())
        return
    from sedsweep.report.tables import log_sweep_tables
    from sedsweep.sweep.runner import run_sweep

    typer.echo(f"sweep {plan.spec.name}: {plan.n_trials} trials of up to {plan.epochs} epochs")
    outcome = run_sweep(
        plan, workdir=workdir, address=address, storage=storage, tracking_uri=tracking_uri,
        on_finish=log_sweep_tables, tracking="offline" if offline else "async",
        drain_timeout=drain_timeout,
    )  # fmt: skip
    _sweep_result(outcome)


@app.command("resume")
def resume_cmd(
    target: Annotated[Path, typer.Argument(help="A sweep's Ray directory or a work directory.")],
    address: Address = None,
    drain_timeout: DrainTimeout = 120.0,
    trust_unsealed: Annotated[
        bool,
        typer.Option(
            "--trust-unsealed",
            help="Seal the sweep's Ray state as it is, then resume: for a sweep of yours that "
            "resume refuses as not sealed (one from before sedsweep sealed its state).",
        ),
    ] = False,
) -> None:
    """Finish an interrupted sweep from its checkpoints, with the searcher state restored."""
    from sedsweep.report.tables import log_sweep_tables
    from sedsweep.sweep.runner import resume_sweep

    outcome = resume_sweep(
        target, address=address, on_finish=log_sweep_tables, drain_timeout=drain_timeout,
        trust_unsealed=trust_unsealed,
    )  # fmt: skip
    _sweep_result(outcome)


@app.command("compare")
def compare_cmd(
    first: Annotated[Path, typer.Argument(help="A sweep's Ray directory or a work directory.")],
    second: Annotated[Path, typer.Argument(help="Another one.")],
    tolerance: Annotated[
        float, typer.Option(min=0.0, help="Objective values this close (absolute) count as equal.")
    ] = 0.0,
) -> None:
    """Whether two executions are the same sweep, and if not where they first diverge (exit 1)."""
    from sedsweep.sweep.record import compare_records
    from sedsweep.sweep.state import load_record

    found = compare_records(load_record(first), load_record(second), tolerance)
    typer.echo(found.render(str(first), str(second)), nl=False)
    if not found.same:
        raise typer.Exit(1)


@app.command("sync")
def sync_cmd(
    target: Annotated[Path, typer.Argument(help="A sweep's Ray directory or a work directory.")],
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            help="Replay into this store (default: the sweep's own).", callback=_password_in_argv
        ),
    ] = None,
) -> None:
    """Send a sweep's tracking journal to MLflow: what an outage or --offline left behind, or
    the whole record into another store."""
    from sedsweep.report.tables import log_sweep_tables
    from sedsweep.sweep.runner import sync_sweep

    done = sync_sweep(target, tracking_uri=tracking_uri, on_finish=log_sweep_tables)
    typer.echo(f"sent {done.sent} journaled events to {done.uri}")
    if done.parent_run_id:
        typer.echo(f"MLflow parent run {done.parent_run_id} in {done.uri}: {done.ui_url}")
    if done.pending:
        typer.echo(
            f"sedsweep: {done.pending} events still pending ({done.error}); run this again",
            err=True,
        )
        raise typer.Exit(1)


def _sweep_result(outcome) -> None:
    from sedsweep.tracking import display_uri, ui_hint

    typer.echo(outcome.summary())
    best = outcome.best
    # an incomplete sweep names no best: the best of the trials that happened to finish is no
    # answer (its closing line says how many did)
    if outcome.complete and best:
        (metric, value), *_ = best["metrics"].items()
        score = f"({metric} {value:.4g}) {best['config']}"
        if best.get("checked", True):
            typer.echo(f"best trained trial: {best['trial']} {score}")
        else:
            typer.echo(f"best: {score} (not checked for training validity: no tables)")
    elif outcome.complete and outcome.counts.get("completed"):
        typer.echo("best: none: no completed trial trained (see the lines above)")
    if outcome.parent_run_id:
        typer.echo(
            f"MLflow parent run {outcome.parent_run_id} in {display_uri(outcome.tracking_uri)}: "
            f"{outcome.ui_url}"
        )
        if serve := ui_hint(outcome.tracking_uri):
            typer.echo(serve)
    typer.echo(f"Ray results in {outcome.path}")
    if outcome.trace_sha256:
        typer.echo(f"trace {outcome.trace_sha256[:16]} (compare executions: sedsweep compare A B)")
    hint = outcome.sync_hint()
    if hint:
        typer.echo(hint, err=True)
    if not outcome.complete:
        typer.echo(
            f"sweep incomplete: {outcome.finished} of {outcome.expected} trials finished, "
            f"no best yet; resume with: sedsweep resume {outcome.path}",
            err=True,
        )
        raise typer.Exit(1)
    if hint and not outcome.offline:
        raise typer.Exit(1)


class TableFormat(StrEnum):
    md = "md"
    csv = "csv"
    html = "html"
    tex = "tex"


class ClaimsFormat(StrEnum):
    md = "md"
    csv = "csv"
    json = "json"


class Evaluator(StrEnum):
    ped_anova = "ped-anova"
    fanova = "fanova"


class Arms(StrEnum):
    all = "all"
    best = "best"


Sweeps = Annotated[
    list[str], typer.Argument(help="Sweep name(s) (MLflow experiment) or parent run id(s).")
]
Keys = Annotated[str | None, typer.Option(help="Comma-separated config keys.")]
Metrics = Annotated[
    str | None,
    typer.Option(help="Comma-separated metric names, e.g. test/when_frame_auc,val/loss."),
]


def _keys(text: str | None) -> list[str] | None:
    return None if text is None else [k.strip() for k in text.split(",") if k.strip()]


@app.command("table")
def table_cmd(
    sweeps: Sweeps,
    rows: Keys = None,
    cols: Keys = None,
    metrics: Metrics = None,
    with_paper: Annotated[
        bool, typer.Option("--with-paper", help="Add the papers' published numbers.")
    ] = False,
    format_: Annotated[TableFormat, typer.Option("--format", help="Output format.")] = (
        TableFormat.md
    ),
    out: Annotated[Path | None, typer.Option(help="Write to a file instead of stdout.")] = None,
    digits: Annotated[int, typer.Option(min=1, max=8, help="Decimals shown.")] = 3,
    workdir: Workdir = DEFAULT_WORKDIR,
    tracking_uri: TrackingUri = None,
) -> None:
    """Comparison table of one or more sweeps (mean ± std over replicates, best marked)."""
    from sedsweep.report.tables import build_table

    read = [_sweep_runs(s, workdir, tracking_uri) for s in sweeps]
    table = build_table(
        read, rows=_keys(rows), columns=_keys(cols), metrics=_keys(metrics),
        with_paper=with_paper, digits=digits,
    )  # fmt: skip
    _emit(table.render(format_.value), out)
    _read(*read)


@app.command("claims")
def claims_cmd(
    sweep: Annotated[str, typer.Argument(help="Sweep name (MLflow experiment) or parent run id.")],
    format_: Annotated[ClaimsFormat, typer.Option("--format", help="Output format.")] = (
        ClaimsFormat.md
    ),
    out: Annotated[Path | None, typer.Option(help="Write to a file instead of stdout.")] = None,
    log: Annotated[
        bool, typer.Option("--log", help="Also log claims.md / claims.csv to the parent run.")
    ] = False,
    workdir: Workdir = DEFAULT_WORKDIR,
    tracking_uri: TrackingUri = None,
) -> None:
    """Check the paper claims a sweep's file states: paired (or Welch) tests, Holm, verdicts."""
    from sedsweep.errors import UserError
    from sedsweep.report.claims import check_claims, log_claims

    runs = _sweep_runs(sweep, workdir, tracking_uri)
    if not runs.spec.claims:
        raise UserError("its search-space file states no claims", where=runs.name)
    report = check_claims(runs)
    if log:
        log_claims(runs, report)
    _emit(report.render(format_.value), out)
    _read(runs)


@app.command("evidence")
def evidence_cmd(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Evidence files or folders (default: search_spaces/evidence)."),
    ] = None,
    run: Annotated[
        bool, typer.Option("--run", help="Run each named file's sweep, then export its results.")
    ] = False,
    export: Annotated[
        bool,
        typer.Option("--export", help="Export each named file's newest sweep from the store."),
    ] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 when the page differs from what the CSVs give.")
    ] = False,
    out: Annotated[Path, typer.Option(help="The page.")] = Path("EVIDENCE.md"),
    workdir: Workdir = DEFAULT_WORKDIR,
    tracking_uri: TrackingUri = None,
) -> None:
    """Re-test the papers' claims: run evidence sweeps, keep their results as CSVs, write a page."""
    from sedsweep.evidence_sweeps import generate

    result = generate(
        paths or [Path("search_spaces/evidence")], out=out, root=Path.cwd(), run=run,
        export=export, check=check, workdir=workdir, tracking_uri=tracking_uri,
    )  # fmt: skip
    for folder in result.exported:
        typer.echo(f"results: {folder}")
    for line in result.incomplete:
        typer.echo(f"incomplete sweep: {line}", err=True)
    if check:
        if not result.up_to_date:
            typer.echo(f"{out} differs from what the results CSVs give: run sedsweep evidence")
            raise typer.Exit(1)
        typer.echo(f"{out} is what the results CSVs give")
        return
    typer.echo(f"wrote {out}")
    if result.incomplete:
        raise typer.Exit(1)


def _sweep_runs(target: str, workdir: Path, tracking_uri: str | None) -> SweepRuns:
    """A sweep read back from its store; a work directory without a store is exit 2, and is
    not created."""
    from sedsweep.report.runs import load_sweep_runs
    from sedsweep.tracking import existing_store

    return load_sweep_runs(target, existing_store(workdir, tracking_uri))


def _read(*sweeps: SweepRuns) -> None:
    """Say on stderr which execution of each sweep a command read (after it succeeded)."""
    for runs in sweeps:
        typer.echo(f"read {runs.which}", err=True)


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        typer.echo(text, nl=False)
        return
    from sedsweep.fsio import atomic_file

    with atomic_file(out, "w", encoding="utf-8") as handle:
        handle.write(text)
    typer.echo(f"wrote {out}")


@app.command("best")
def best_cmd(
    sweep: Annotated[str, typer.Argument(help="Sweep name (MLflow experiment) or parent run id.")],
    confirm_top: Annotated[
        int, typer.Option(min=0, help="Re-run the top K configs with fresh seeds (0: don't).")
    ] = 0,
    seeds: Annotated[int, typer.Option(min=1, help="Fresh seeds per confirmed config.")] = 3,
    arms: Annotated[
        Arms,
        typer.Option(help="Confirm the top K of each arm of the table's rows, or overall."),
    ] = Arms.all,
    out: Annotated[Path, typer.Option(help="Where to write the run spec.")] = Path("best.yaml"),
    register: Annotated[
        str | None, typer.Option(help="Register the model under NAME; alias 'champion' moves.")
    ] = None,
    evaluator: Annotated[
        Evaluator, typer.Option(help="Parameter-importance evaluator.")
    ] = Evaluator.ped_anova,
    device: Annotated[str | None, typer.Option(help="cpu | cuda | cuda:N.")] = None,
    workdir: Workdir = DEFAULT_WORKDIR,
    tracking_uri: TrackingUri = None,
    address: Address = None,
    storage: Annotated[str | None, typer.Option(help="Ray storage path (shared FS).")] = None,
    pick: Annotated[
        str | None,
        typer.Option(
            help="Pareto sweeps: knee (default) | weights=A,B,... | 'constraint:METRIC>=X,...'."
        ),
    ] = None,
) -> None:
    """Pick the best trial on validation, optionally confirm over seeds, export and test it once."""
    from sedsweep.report.best import render_report
    from sedsweep.selection import select_best

    runs = _sweep_runs(sweep, workdir, tracking_uri)
    with Progress(None, "epochs", "epoch", sys.stderr) as progress:
        report = select_best(
            runs, out=out, workdir=workdir, confirm=confirm_top, seeds=seeds, arms=arms.value,
            register=register,
            evaluator=evaluator.value, device=device, address=address, storage=storage,
            pick=pick, say=progress.line,
            on_epoch=lambda epoch, metrics: progress.advance(_epoch_text(epoch, metrics, None)),
        )  # fmt: skip
    typer.echo(render_report(report), nl=False)
    typer.echo(f"wrote {out}; reproduce with: sedsweep train --config {out}")
    _read(runs)


@app.command("dashboard")
def dashboard_cmd(
    sweep: Annotated[str, typer.Argument(help="Sweep name (MLflow experiment) or parent run id.")],
    out: Annotated[Path, typer.Option(help="Output directory (index.html).")],
    overwrite: Overwrite = False,
    mlflow_url: Annotated[
        str | None,
        typer.Option(
            help="MLflow UI base URL for run links (default: the tracking server, or "
            "http://127.0.0.1:5000 as `sedsweep ui` serves the SQLite store)."
        ),
    ] = None,
    top: Annotated[
        int, typer.Option(min=1, help="Learning curves of the first N trials of the leaderboard.")
    ] = 40,
    evaluator: Annotated[
        Evaluator, typer.Option(help="Parameter-importance evaluator.")
    ] = Evaluator.ped_anova,
    workdir: Workdir = DEFAULT_WORKDIR,
    tracking_uri: TrackingUri = None,
) -> None:
    """A self-contained static HTML dashboard of a sweep (opens from disk, offline)."""
    from sedsweep.report.dashboard import build_dashboard

    runs = _sweep_runs(sweep, workdir, tracking_uri)
    index = build_dashboard(
        runs, out, overwrite=overwrite, mlflow_url=mlflow_url, top=top,
        evaluator=evaluator.value,
    )  # fmt: skip
    typer.echo(f"wrote {index}")
    _read(runs)


@app.command("ui")
def ui_cmd(
    workdir: Workdir = DEFAULT_WORKDIR,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 5000,
) -> None:
    """Start the MLflow UI on the work directory's SQLite store (Ctrl-C stops it)."""
    from sedsweep.tracking import serve_ui

    raise typer.Exit(serve_ui(workdir, host, port))


def _expand_multi_values(argv: list[str]) -> list[str]:
    """Rewrite `--snr 0 10 20` as `--snr 0 --snr 10 --snr 20` (click takes one value per flag)."""
    out: list[str] = []
    current = None
    for token in argv:
        if token in MULTI_VALUE_OPTIONS:
            current = token
            out.append(token)
        elif current and not token.startswith("--"):
            if out[-1] != current:
                out.append(current)
            out.append(token)
        else:
            current = None
            out.append(token)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point: one-line errors with exit code 2 for bad input, never a traceback."""
    args = _expand_multi_values(list(sys.argv[1:] if argv is None else argv))
    try:
        code = app(args=args, prog_name="sedsweep", standalone_mode=False)
    except UserError as exc:
        typer.echo(f"sedsweep: error: {exc}", err=True)
        return _exit(2, argv)
    except typer.TyperException as exc:  # the base of click's usage errors (vendored by typer)
        # one line, as every other input error: the command, what is wrong, where help is
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "sedsweep"
        text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.echo(f"sedsweep: error: {command}: {' '.join(text.split())} "
                   f"(see `{command} --help`)", err=True)  # fmt: skip
        return _exit(getattr(exc, "exit_code", 2), argv)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("sedsweep: interrupted", err=True)
        return _exit(130, argv)
    except typer.Exit as exc:
        return _exit(exc.exit_code, argv)
    except Exception as exc:  # a full disk anywhere: one line, with what is left there
        from sedsweep.fsio import disk_full, no_space

        full = disk_full(exc)
        if full is None:
            raise
        typer.echo(f"sedsweep: error: {no_space(full.filename)}", err=True)
        return _exit(2, argv)
    if code == 130:  # typer returns Ctrl-C (KeyboardInterrupt) as exit code 130
        typer.echo("sedsweep: interrupted", err=True)
    return _exit(code if isinstance(code, int) else 0, argv)  # non-standalone: Exit codes


def _exit(code: int, argv: list[str] | None) -> int:
    if argv is None:  # the process ends here
        # Interpreter shutdown would collect every object MLflow's imports made (about 1 s
        # on 2 cores, measured in tests/benchmarks/bench_readonly.py); freezing them skips
        # that final collection. Exit handlers (Ray's shutdown, weakref finalizers) still run.
        gc.freeze()
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
