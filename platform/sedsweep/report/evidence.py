"""Evidence: shipped sweeps that re-test the papers' claims, kept as MLflow-independent CSVs and
rendered into one page (`EVIDENCE.md`).

An evidence file is a search-space file with `claims:` (`search_spaces/evidence/*.yaml`). Once
its sweep has run, `export` writes what the page needs into `results/<file stem>/` beside it:
`trials.csv` (one row per trial: number, status, epochs reached, the design and replicate
keys, every final metric), `curves.csv` (each trial's objective per epoch: the validation
curve the gate judged) and `run.json` (when and where it ran, the file's hash, the trace hash
of the reproducibility record). The page shows each arm's curve (mean and range over its
replicates, `curves.png` beside the CSVs) and the gate's outcome per arm. `load` rebuilds a
`SweepRuns` from those files alone, so `check_claims` and `build_table` give the same
verdicts and tables as they give from the tracking store, and `render` writes the page from
the CSVs only: the page can be regenerated, and checked, on a machine that never ran the
sweeps.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sedsweep.config import validate
from sedsweep.errors import UserError
from sedsweep.fsio import atomic_file, write_json
from sedsweep.report.claims import (
    ClaimCheck,
    ClaimsReport,
    check_claims,
    direction_text,
    equivalence_text,
    magnitude_text,
    select_trials,
    validity_text,
)
from sedsweep.report.runs import (
    COMPLETED,
    SweepRuns,
    TrialRun,
    parse_param,
)
from sedsweep.report.tables import build_table, paper_value
from sedsweep.sweep.spec import SweepSpec, read_sweep_file
from sedsweep.tracking import TRACE_TAG
from sedsweep.validity import REASON_TAG, VALID_TAG

RESULTS_DIR = "results"
TRIALS_CSV = "trials.csv"
CURVES_CSV = "curves.csv"
CURVES_PNG = "curves.png"
RUN_JSON = "run.json"
FIXED_COLUMNS = ("number", "status", "epochs_reached")
VALIDITY_COLUMNS = ("valid", "invalid_reason")  # the validity gate's verdict per trial
COLUMN_ORDER = ("validity", "direction", "magnitude", "equivalence")


def spec_sha256(spec: SweepSpec) -> str:
    """Hash of what an evidence file asks to run: its validated spec without the free-text
    `description` (comments and wording do not change a result; any other field does). A
    result made from another spec reads as stale."""
    plain = spec.model_dump(mode="json", exclude={"description"})
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()


def results_dir(spec_file: Path) -> Path:
    """Where an evidence file's CSVs live: `results/<stem>/` beside it."""
    return spec_file.parent / RESULTS_DIR / spec_file.stem


def read_spec(spec_file: Path) -> SweepSpec:
    """An evidence file's spec (its `scales:` entry for its own scale merged, as a sweep reads
    it); validated as a file, not against the method (the page needs no method)."""
    spec = validate(SweepSpec, read_sweep_file(spec_file), str(spec_file))
    if not spec.claims:
        raise UserError("an evidence file states no claims", where=f"{spec_file}: claims")
    return spec


# -- export ------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return "None" if value is None else str(value)


def _keys(sweep: SweepRuns) -> list[str]:
    return list(dict.fromkeys([*sweep.searched_keys, *sweep.replicate_keys]))


def trials_csv(sweep: SweepRuns) -> str:
    """One row per trial: number, status, epochs reached, its validity (`valid`: true / false
    / unjudged, and the reason), design and replicate keys, metrics."""
    keys = _keys(sweep)
    metrics = sorted({m for t in sweep.trials for m in t.metrics})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*FIXED_COLUMNS, *VALIDITY_COLUMNS, *keys, *metrics])
    for t in sweep.trials:
        values = [t.metrics.get(m) for m in metrics]
        verdict = sweep.validity(t)
        writer.writerow(
            [t.number, t.status, t.epochs, verdict.tag, verdict.reason]
            + [_cell(t.value(k)) for k in keys]
            + ["" if v is None else repr(float(v)) for v in values]
        )
    return out.getvalue()


def curves_csv(sweep: SweepRuns) -> str:
    """Each trial's objective per epoch (trial number, epoch, value): the validation curve
    the validity gate's convergence test reads."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["number", "epoch", sweep.objective])
    for t in sweep.trials:
        for step, value in sorted(sweep.history(t.run_id, sweep.objective)):
            writer.writerow([t.number, step, repr(float(value))])
    return out.getvalue()


def _utc(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def run_info(
    sweep: SweepRuns, spec_file: Path, spec: SweepSpec, ended_ms: int | None
) -> dict[str, Any]:
    """When, where and from what the sweep ran (run.json); `spec` is the file's, as read now."""
    start = sweep.start_time / 1000
    end = (ended_ms or sweep.start_time) / 1000
    return {
        "sweep": sweep.name,
        "file": spec_file.name,
        "spec_sha256": spec_sha256(spec),
        "parent_run_id": sweep.parent_run_id,
        "status": sweep.parent_status,
        "started": _utc(start),
        "ended": _utc(end),
        "wall_s": round(end - start, 1),
        "trials": sweep.counts,
        "trace_sha256": sweep.parent_tags.get(TRACE_TAG),
    }


def export(
    sweep: SweepRuns,
    spec_file: Path,
    spec: SweepSpec,
    ended_ms: int | None,
    machine: dict[str, Any],
) -> Path:
    """Write `trials.csv` and `run.json` of a finished evidence sweep; return their folder."""
    folder = results_dir(spec_file)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_file(folder / TRIALS_CSV) as fh:
        fh.write(trials_csv(sweep))
    with atomic_file(folder / CURVES_CSV) as fh:
        fh.write(curves_csv(sweep))
    write_json(
        folder / RUN_JSON, {**run_info(sweep, spec_file, spec, ended_ms), "machine": machine}
    )
    return folder


def machine_facts() -> dict[str, Any]:
    """The machine a run used, for the page: CPUs, platform, load averages."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "load_1_5_15": load}


# -- load --------------------------------------------------------------------------------------
def load(spec_file: Path, spec: SweepSpec) -> tuple[SweepRuns, dict[str, Any]] | None:
    """The sweep an evidence file's CSVs hold (`spec`: the file's, read once by the caller),
    and its run.json; None when it has not run."""
    folder = results_dir(spec_file)
    if not (folder / TRIALS_CSV).exists() and not (folder / RUN_JSON).exists():
        return None
    try:
        info = json.loads((folder / RUN_JSON).read_text())
        rows = list(csv.DictReader(io.StringIO((folder / TRIALS_CSV).read_text())))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot be read ({exc})", where=str(folder)) from None
    missing = [c for c in FIXED_COLUMNS if rows and c not in rows[0]]
    if missing:
        raise UserError(f"lacks the column {missing[0]!r}", where=str(folder / TRIALS_CSV))
    sweep = SweepRuns(
        tracking_uri="",
        experiment_id="",
        experiment_name=spec.name,
        parent_run_id=str(info.get("parent_run_id", "")),
        parent_status=str(info.get("status", "")),
        parent_tags={},
        parent_metrics={},
        start_time=0,
        spec=spec,
    )
    keys = _keys(sweep)  # from the spec alone
    for line, row in enumerate(rows, start=2):
        try:
            number = int(row["number"])
            metrics = {
                k: float(v)
                for k, v in row.items()
                if k not in keys and k not in FIXED_COLUMNS and k not in VALIDITY_COLUMNS and v
            }
        except (TypeError, ValueError) as exc:
            raise UserError(
                f"line {line}: not a number ({exc})", where=str(folder / TRIALS_CSV)
            ) from None
        params = {k: parse_param(row[k]) for k in keys if k in row}
        tags = {VALID_TAG: row.get("valid") or "", REASON_TAG: row.get("invalid_reason") or ""}
        name = f"t{number:03d}"
        status, kept = row["status"], tags if row.get("valid") else {}
        sweep.trials.append(TrialRun(f"trial-{number}", name, status, params, metrics, kept,
                                     0, number))  # fmt: skip
    _load_curves(sweep, folder / CURVES_CSV)
    return sweep, info


def _load_curves(sweep: SweepRuns, path: Path) -> None:
    """Put `curves.csv` (when the results have one) where `SweepRuns.history` finds it."""
    if not path.exists():
        return
    curves: dict[str, list[tuple[int, float]]] = {f"trial-{t.number}": [] for t in sweep.trials}
    try:
        for row in csv.DictReader(io.StringIO(path.read_text())):
            curves.setdefault(f"trial-{int(row['number'])}", []).append(
                (int(row["epoch"]), float(row[sweep.objective]))
            )
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"cannot be read ({exc})", where=str(path)) from None
    for run_id, points in curves.items():
        sweep._histories[(run_id, sweep.objective)] = sorted(points)


def has_curves(spec_file: Path) -> bool:
    """Whether an evidence file's results include learning curves."""
    return (results_dir(spec_file) / CURVES_CSV).exists()


def arms(sweep: SweepRuns) -> dict[str, list[TrialRun]]:
    """The sweep's trials grouped by design cell (replicates pooled), labelled `k=v, ...`."""
    keys = [k for k in sweep.searched_keys if k not in sweep.replicate_keys]
    out: dict[str, list[TrialRun]] = {}
    for t in sweep.trials:
        out.setdefault(", ".join(f"{k}={t.value(k)}" for k in keys) or "all", []).append(t)
    return out


def draw_curves(sweep: SweepRuns, path: Path) -> Path:
    """Each arm's validation curve of the objective: the mean over its trials at each epoch,
    a band from their minimum to their maximum, and how many of them the gate passed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = arms(sweep)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colours = plt.get_cmap("tab10")
    for i, (label, trials) in enumerate(groups.items()):
        by_epoch: dict[int, list[float]] = {}
        for t in trials:
            for step, value in sweep.history(t.run_id, sweep.objective):
                if math.isfinite(value):
                    by_epoch.setdefault(step, []).append(value)
        if not by_epoch:
            continue
        epochs = sorted(by_epoch)
        mean = [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs]
        valid = sum(sweep.validity(t).valid for t in trials)
        colour = colours(i % 10)
        ax.plot(epochs, mean, color=colour, label=f"{label} (valid {valid}/{len(trials)})")
        ax.fill_between(epochs, [min(by_epoch[e]) for e in epochs],
                        [max(by_epoch[e]) for e in epochs], color=colour, alpha=0.15)  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel(sweep.objective)
    ax.set_title(f"{sweep.name}: mean and range over replicates", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return path


def _gate_rows(sweep: SweepRuns) -> list[str]:
    """The validity gate's outcome per arm: trials, valid, and the reasons of the others."""
    lines = ["| arm | trials | valid | not valid: why |", "|---|---:|---:|---|"]
    for label, trials in arms(sweep).items():
        verdicts = [sweep.validity(t) for t in trials]
        why = "; ".join(f"{t.name}: {v.reason}" for t, v in zip(trials, verdicts, strict=True)
                        if not v.valid)  # fmt: skip
        lines.append(f"| {label} | {len(trials)} | {sum(v.valid for v in verdicts)} | {why} |")
    return lines


# -- render ------------------------------------------------------------------------------------
@dataclass
class Section:
    """One evidence file on the page."""

    file: Path
    spec: SweepSpec
    sweep: SweepRuns | None
    info: dict[str, Any]
    claims: ClaimsReport | None  # None: not run, or stale (no verdict stands on its results)

    @property
    def stale(self) -> bool:
        """The file's spec changed since its results were made."""
        return bool(self.info) and self.info.get("spec_sha256") != spec_sha256(self.spec)


def sections(files: list[Path]) -> list[Section]:
    """Every evidence file with what its CSVs hold (no results: a section that says so)."""
    out = []
    for f in files:
        spec = read_spec(f)
        loaded = load(f, spec)
        if loaded is None:
            out.append(Section(f, spec, None, {}, None))
            continue
        sweep, info = loaded
        section = Section(f, spec, sweep, info, None)
        if not section.stale:
            section.claims = check_claims(sweep)
        out.append(section)
    return out


def command(spec_file: Path, root: Path) -> str:
    """The command that regenerates a section."""
    return f"sedsweep evidence {_rel(spec_file, root)} --run"


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _paper_pair(section: Section, check: ClaimCheck) -> str:
    """The published a / b values where the paper has numbers for both cells."""
    assert section.sweep is not None
    completed = section.sweep.with_status(COMPLETED)
    methods = {section.spec.method}
    sides = []
    for selector in (check.a, check.b):
        trials = select_trials(completed, selector)
        fixed = section.sweep.fixed_values
        sides.append(paper_value(methods, trials, check.claim.metric, fixed) if trials else None)
    if None in sides:
        return "—"
    return f"{sides[0]:.3f} vs {sides[1]:.3f}"


def _summary_rows(items: list[Section], root: Path) -> list[str]:
    head = ["evidence file", "claim", "a vs b", "paper a vs b", "ours a vs b (n)", "validity",
            "direction", "magnitude", "equivalence"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in items:
        name = f"[{s.file.stem}](#{s.file.stem.replace('_', '-')})"
        if s.sweep is None:
            lines.append(f"| {name} | not run yet: `{command(s.file, root)}` |" + " |" * 7)
            continue
        if s.claims is None:  # stale: made from another spec, no verdict stands on them
            lines.append(
                f"| {name} | stale: its results were made from an earlier spec; no verdict "
                f"until `{command(s.file, root)}` |" + " |" * 7
            )
            continue
        for c in s.claims.checks:
            ours = (
                f"{_num(_mean(c.values_a))} vs {_num(_mean(c.values_b))} "
                f"({len(c.values_a)} vs {len(c.values_b)})"
            )
            lines.append(
                f"| {name} | {c.claim.name} | {c.label('a')} vs {c.label('b')} "
                f"| {_paper_pair(s, c)} | {ours} | {validity_text(c)} | {direction_text(c)} "
                f"| {magnitude_text(c)} | {equivalence_text(c)} |"
            )
    return lines


def _load_text(machine: dict[str, Any]) -> str:
    """The 1-minute load average around the run: before and after it for `--run`, else when
    the results were exported."""
    after = (machine.get("load_1_5_15") or [None])[0]
    before = (machine.get("load_before") or [None])[0]
    if before is not None and after is not None:
        return f", load average {before} before and {after} after"
    return "" if after is None else f", load average {after} when exported"


def _section(s: Section, root: Path) -> list[str]:
    lines = [f"## {s.file.stem}", ""]
    if s.spec.description:
        lines += [s.spec.description.strip(), ""]
    lines += [f"- File: `{_rel(s.file, root)}` (sweep `{s.spec.name}`, method `{s.spec.method}`)"]
    lines += [f"- Regenerate: `{command(s.file, root)}`"]
    if s.sweep is None:
        return [*lines, "- Not run yet: no results in "
                f"`{_rel(results_dir(s.file), root)}`.", ""]  # fmt: skip
    i = s.info
    machine = i.get("machine", {})
    lines += [
        f"- Ran {i.get('started')} → {i.get('ended')}: wall {i.get('wall_s', 0) / 60:.1f} min, "
        f"{s.sweep.describe_counts()}; machine: {machine.get('cpus', '?')} CPUs, "
        f"{machine.get('platform', '?')}" + _load_text(machine),
        f"- Results: `{_rel(results_dir(s.file), root)}/` (trials.csv, run.json); "
        f"reproducibility trace `{(i.get('trace_sha256') or '—')[:16]}`",
    ]
    if s.stale:
        lines.append(
            "- **Stale**: the file's spec changed since these results were made; run the command "
            "above. Their numbers are shown as found; their claims are not judged."
        )
    if has_curves(s.file):
        png = _rel(results_dir(s.file) / CURVES_PNG, root)
        lines += ["", f"![validation curves of {s.file.stem}]({png})", "", *_gate_rows(s.sweep)]
    else:
        lines.append("- No learning curves: these results predate `curves.csv`.")
    table = build_table([s.sweep], with_paper=True)
    lines += ["", table.render("md").rstrip(), ""]
    if s.claims is not None:
        lines += [s.claims.render("md").rstrip(), ""]
    return lines


def render(files: list[Path], root: Path) -> str:
    """The whole page: the verdicts of every claim first, then one section per file."""
    return _page(sections(files), root)


def _page(items: list[Section], root: Path) -> str:
    counts: dict[str, dict[str, int]] = {column: {} for column in COLUMN_ORDER}
    total = 0
    for s in items:
        if s.claims is None:
            continue
        total += len(s.claims.checks)
        for column in COLUMN_ORDER:
            for answer, n in s.claims.counts(column).items():
                counts[column][answer] = counts[column].get(answer, 0) + n
    tally = "; ".join(
        f"{column}: " + ", ".join(f"{n} {answer}" for answer, n in sorted(found.items()))
        for column, found in counts.items()
        if found
    )
    ran = [s for s in items if s.claims is not None]
    lines = [
        "# Evidence: the papers' claims re-tested",
        "",
        "<!-- Generated by `sedsweep evidence` from the evidence files and their results CSVs; "
        "edit those, not this page. -->",
        "",
        f"{len(ran)} of {len(items)} evidence files have run; their {total} claim checks: "
        f"{tally or 'none'}. Each claim is answered in `sedsweep claims`'s four columns: "
        "validity (both arms trained, else NOT TESTED and nothing measured), direction "
        "(one-sided tests over seeds, Holm-corrected within each file: REPLICATED, REVERSED or "
        "NOT DETECTED), magnitude (our effect with a simultaneous interval, as a multiple of the "
        "paper's and as a share of the headroom above chance; SUSPECT far above the paper's) "
        "and equivalence (TOST, where a claim declares a margin). Effects are oriented so that "
        "positive is what the paper claims.",
        "",
        "## Verdicts",
        "",
        *_summary_rows(items, root),
        "",
    ]
    for s in items:
        lines += _section(s, root)
    return "\n".join(lines).rstrip() + "\n"


def write_page(files: list[Path], root: Path, out: Path) -> str:
    """Render the page and write it atomically, each file's curves figure beside its CSVs;
    return the text."""
    items = sections(files)
    text = _page(items, root)
    for s in items:
        if s.sweep is not None and has_curves(s.file):
            draw_curves(s.sweep, results_dir(s.file) / CURVES_PNG)
    with atomic_file(out) as fh:
        fh.write(text)
    return text


def evidence_files(paths: list[Path]) -> list[Path]:
    """The evidence files named (folders: their `*.yaml`), sorted, each checked to exist."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(p.glob("*.yaml"))
        elif p.is_file():
            files.append(p)
        else:
            raise UserError("no such evidence file or folder", where=str(p))
    if not files:
        raise UserError("holds no evidence file (*.yaml)", where=", ".join(map(str, paths)))
    return list(dict.fromkeys(files))


def export_from_store(
    spec_file: Path, target: str, tracking_uri: str, machine: dict[str, Any]
) -> Path:
    """Export the sweep `target` (name or parent run id) from the tracking store as the
    evidence file's results."""
    from sedsweep.report.runs import load_sweep_runs

    sweep = load_sweep_runs(target, tracking_uri)
    spec = read_spec(spec_file)
    if sweep.name != spec.name:
        raise UserError(
            f"is sweep {sweep.name!r}, not this file's {spec.name!r}",
            where=f"{spec_file}: name",
        )
    check_complete(sweep, spec_file)
    ended = sweep.client.get_run(sweep.parent_run_id).info.end_time
    return export(sweep, spec_file, spec, ended, machine)


def check_complete(sweep: SweepRuns, spec_file: Path) -> None:
    """Evidence is made of finished sweeps only: every planned trial completed or stopped by
    the scheduler. A partial one would give verdicts on the cells that happened to run."""
    if not sweep.complete:
        raise UserError(
            f"sweep {sweep.name} is incomplete ({sweep.describe_counts()} of {sweep.planned} "
            "planned): finish it with `sedsweep resume`, then export it again",
            where=str(spec_file),
        )
