"""Comparison tables in the papers' layouts, from the trials of one or more sweeps.

Rows and columns are config (or `data.*`) keys; every cell holds, per metric, the values of
the completed trials that share the row and column values — the replicates (seeds, folds) —
aggregated as mean ± sample standard deviation (n). A value is the trial's delivered model's
(`val/...` at its selected epoch, see `report.runs`). Per column and metric the best mean is
marked, and so is every cell a two-sided t-test (α = 0.05) cannot tell apart from it: paired
over the replicate values when both cells hold the same replicates (shared seeds), Welch's
unequal-variance test otherwise; with fewer than two replicates on either side no test is
possible and only the best is marked.

A search sweep (TPE, random, ...) has no replicates: a cell then shows its best trial (at the
fidelity it reached) and the mean ± std over all its trials, pruned ones included, at the
highest rung every trial of the table reached. Before either, the design is checked
(`report.design`): confounded keys and cells that pool different configurations are noted.
"""

from __future__ import annotations

import csv
import functools
import html
import io
import logging
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from sedsweep.errors import UserError, unknown_name
from sedsweep.report.design import check_design, hashable
from sedsweep.report.runs import (
    COMPLETED,
    PRUNED,
    SweepRuns,
    TrialRun,
    load_sweep_runs,
    md_text,
    short_name,
)
from sedsweep.report.stats import pair_up, paired_p, welch_p
from sedsweep.sweep.spec import same_value
from sedsweep.tracking import MAX_TAG_CHARS, TABLE_ERROR_TAG, TABLES_DIR, client_for

if TYPE_CHECKING:
    from sedsweep.sweep.outcome import SweepOutcome

ALPHA = 0.05
FORMATS = ("md", "csv", "html", "tex")


@dataclass
class Cell:
    """One metric of one table cell: the replicate values and their summary."""

    values: list[float]
    runs: list[str]
    replicates: list[tuple] = field(default_factory=list)  # replicate-key values per value
    paper: float | None = None
    mark: str | None = None  # "best" | "tie"
    p_value: float | None = None
    test: str | None = None  # "paired t" | "Welch t": how p_value was computed
    best: tuple[float, str, int] | None = None  # search sweeps: (value, trial, epochs reached)
    rung: int | None = None  # search sweeps: the epoch `values` are taken at
    not_trained: int = 0  # the cell's trials left out as not trained (`sedsweep.validity`)

    @property
    def n(self) -> int:
        """Number of replicates."""
        return len(self.values)

    @property
    def mean(self) -> float | None:
        """Mean over replicates."""
        return float(np.mean(self.values)) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof = 1) over replicates; None for n < 2."""
        return float(np.std(self.values, ddof=1)) if self.n >= 2 else None


@dataclass
class ComparisonTable:
    """A comparison table: row and column labels, and a Cell per (row, column, metric)."""

    title: str
    row_keys: list[str]
    col_keys: list[str]
    metrics: list[str]
    rows: list[tuple] = field(default_factory=list)
    columns: list[tuple] = field(default_factory=list)
    cells: dict[tuple[tuple, tuple, str], Cell] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    with_paper: bool = False
    digits: int = 3
    search: bool = False  # cells of a search sweep: best trial + mean at a common rung
    front: set[tuple[tuple, tuple]] = field(default_factory=set)  # Pareto rows per column
    pareto: list[str] = field(default_factory=list)  # the objectives the front is over

    def cell(self, row: tuple, col: tuple, metric: str) -> Cell | None:
        """The cell at (row, column, metric), None when no completed trial is there."""
        return self.cells.get((row, col, metric))

    def render(self, fmt: str) -> str:
        """The table as Markdown, CSV, HTML or LaTeX."""
        renderers = {"md": _markdown, "csv": _csv, "html": _html, "tex": _latex}
        if fmt not in renderers:
            raise UserError(unknown_name("format", fmt, FORMATS), where="--format")
        return renderers[fmt](self)

    # -- shared pieces of the renderers ------------------------------------------------------
    def headers(self) -> list[tuple[tuple, str]]:
        """The value columns: one per (column label, metric)."""
        return [(col, metric) for col in self.columns for metric in self.metrics]

    def col_label(self, col: tuple) -> str:
        """'key=value, key=value' of a column label ('' when the table has no column keys)."""
        return ", ".join(f"{k}={_fmt_value(v)}" for k, v in zip(self.col_keys, col, strict=True))

    def text(self, cell: Cell | None) -> str:
        """mean ± std (n), or mean (n=1), or an em dash for an empty cell; NOT TRAINED (n)
        for a cell whose trials all failed the validity gate, and how many were left out
        beside the values of a cell where some did."""
        if cell is not None and cell.not_trained and not cell.values:
            return f"NOT TRAINED (n={cell.not_trained})"
        if cell is None or not (cell.values or cell.best):
            return "—"
        d = self.digits
        if not cell.values:
            summary = "—"
        elif cell.std is None:
            summary = f"{cell.mean:.{d}f} (n=1)"
        else:
            summary = f"{cell.mean:.{d}f} ± {cell.std:.{d}f} (n={cell.n})"
        untrained = f" · {cell.not_trained} not trained" if cell.not_trained else ""
        if cell.best is None:
            return summary + untrained
        value, trial, epochs = cell.best
        return f"best {value:.{d}f} [{trial}, {epochs} ep] · {summary} at ep {cell.rung}{untrained}"

    def paper_text(self, cell: Cell | None) -> str:
        """The published number, or an em dash."""
        if cell is None or cell.paper is None:
            return "—"
        return f"{cell.paper:.{max(self.digits, 2)}f}"

    def legend(self) -> str:
        """How cells are aggregated and marked."""
        tests = sorted({c.test for c in self.cells.values() if c.test})
        test = " or ".join(tests) if tests else "paired t (shared seeds) or Welch t"
        if self.search:
            what = (
                "best trial of the cell [trial, epochs it reached] · mean ± sample std (n trials, "
                "pruned included) at the highest rung all trials reached (ep); marks compare "
                "the means"
            )
        else:
            what = "mean ± sample std (n replicates) of the completed trials"
        front = (
            f"; ◆: on the Pareto front of the row means over {', '.join(self.pareto)}"
            if self.pareto
            else ""
        )
        return (
            f"{what}; best mean per column in bold; italic (underlined in HTML/LaTeX): not "
            f"distinguishable from the best by a two-sided {test} test (α = {ALPHA}){front}."
        )

    def on_front(self, row: tuple) -> bool:
        """True when the row is on the Pareto front in any column."""
        return any((row, col) in self.front for col in self.columns)


def build_table(
    sweeps: list[SweepRuns],
    *,
    rows: list[str] | None = None,
    columns: list[str] | None = None,
    metrics: list[str] | None = None,
    with_paper: bool = False,
    digits: int = 3,
) -> ComparisonTable:
    """The comparison table of one sweep, or of several sweeps with the same columns."""
    if not sweeps:
        raise UserError("no sweep given", where="SWEEP")
    first = sweeps[0].spec.table
    for other in sweeps[1:]:
        t = other.spec.table
        if (columns is None and t.columns != first.columns) or (
            metrics is None and t.metrics != first.metrics
        ):
            raise UserError(
                f"has table columns {t.columns} × {t.metrics}, not {first.columns} × "
                f"{first.metrics} like {sweeps[0].name}: pass --cols/--metrics to merge",
                where=other.name,
            )
    row_keys = list(rows if rows is not None else first.rows or sweeps[0].searched_keys)
    col_keys = list(columns if columns is not None else first.columns)
    metric_keys = list(metrics if metrics is not None else first.metrics or [sweeps[0].objective])
    _check_keys(sweeps, row_keys + col_keys, metric_keys)
    multi = len(sweeps) > 1 and _rows_collide(sweeps, row_keys)
    if multi:
        row_keys = ["sweep", *row_keys]
    table = ComparisonTable(
        title=" + ".join(s.name for s in sweeps),
        row_keys=row_keys,
        col_keys=col_keys,
        metrics=metric_keys,
        with_paper=with_paper,
        digits=digits,
    )
    table.search = any(sweep.spec.search.algorithm != "grid" for sweep in sweeps)
    members: dict[tuple[tuple, tuple], list[tuple[SweepRuns, TrialRun]]] = {}
    seen_rows, seen_columns = set(table.rows), set(table.columns)
    rung: dict[str, int] = {}
    for sweep in sweeps:
        statuses = (COMPLETED, PRUNED) if table.search else (COMPLETED,)
        kept = sweep.with_status(*statuses)
        skipped = len(sweep.trials) - len(kept)
        if skipped:
            table.notes.append(
                f"{sweep.name}: {skipped} of {len(sweep.trials)} trials left out "
                f"({sweep.describe_counts()})"
            )
        if (invalid := sweep.left_out(*statuses)) is not None:
            table.notes.append(f"{sweep.name}: {invalid}")
        valid = sweep.valid(*statuses)
        if table.search and valid:
            rung[sweep.name] = sweep.common_rung(valid)
            table.notes.append(
                f"{sweep.name}: a search without replicates ({sweep.describe_counts()}): each "
                "cell shows its best trial and the mean ± std over its trials at epoch "
                f"{rung[sweep.name]}, the highest rung all {len(valid)} trials reached"
            )
        cells: dict[tuple[tuple, tuple], list[TrialRun]] = {}  # this sweep's trials per cell
        for trial in kept:
            row = tuple(sweep.name if k == "sweep" else trial.value(k) for k in row_keys)
            col = tuple(trial.value(k) for k in col_keys)
            if row not in seen_rows:  # sets beside the ordered lists: O(1) per trial
                seen_rows.add(row)
                table.rows.append(row)
            if col not in seen_columns:
                seen_columns.add(col)
                table.columns.append(col)
            members.setdefault((row, col), []).append((sweep, trial))
            cells.setdefault((row, col), []).append(trial)
        table.notes += _design_notes(sweep, kept, row_keys + col_keys, table.search, cells)
    table.columns.sort(key=_sort_key)
    methods = {s.spec.method for s in sweeps}
    replicate_keys = sweeps[0].replicate_keys
    for (row, col), group in members.items():
        trials = [t for _, t in group]
        for metric in metric_keys:
            cell = Cell(values=[], runs=[])
            for sweep, trial in group:
                if not sweep.validity(trial).valid:
                    cell.not_trained += 1
                    continue
                at = rung.get(sweep.name)
                value = trial.metric(metric) if at is None else sweep.value_at(trial, metric, at)
                if value is not None:
                    cell.values.append(value)
                    cell.runs.append(trial.run_id)
                    cell.replicates.append(tuple(hashable(trial.value(k)) for k in replicate_keys))
            if table.search and cell.values:
                cell.rung = min(rung[s.name] for s, _ in group if s.name in rung)
                cell.best = _best_of(group, metric)
            if with_paper:
                fixed = [s.fixed_values for s, _ in group]
                common = {k: v for k, v in fixed[0].items() if all(f.get(k) == v for f in fixed)}
                cell.paper = paper_value(methods, trials, metric, common)
            table.cells[(row, col, metric)] = cell
    _mark(table, sweeps[0])
    _mark_front(table, sweeps[0])
    if any(c.n < 2 for c in table.cells.values() if c.values):
        table.notes.append("cells with n = 1: no significance test is possible for them")
    table.notes.append(sweeps[0].selection_note)
    if with_paper:
        table.notes += paper_sources(methods, metric_keys)
    return table


def _best_of(group: list[tuple[SweepRuns, TrialRun]], metric: str) -> tuple[float, str, int] | None:
    """The cell's best trial by the sweep's leaderboard order: (its value of `metric`, name,
    epochs reached)."""
    sweep = group[0][0]
    mine = [t for s, t in group if s is sweep]
    for trial in sorted(mine, key=lambda t: sweep.rank(t.run_id)):
        if not sweep.validity(trial).valid:
            continue
        if (value := trial.metric(metric)) is not None:
            return value, short_name(trial), trial.epochs
    return None


def _design_notes(
    sweep: SweepRuns,
    trials: list[TrialRun],
    shown: list[str],
    search: bool,
    cells: dict[tuple[tuple, tuple], list[TrialRun]],
) -> list[str]:
    """Confounded keys, and cells that pool trials of different configurations (grids)."""
    keys = [k for k in sweep.searched_keys if k != "sweep"]
    design = check_design(trials, keys, [k for k in keys if k not in shown] if search else [])
    notes = [f"{sweep.name}: {w}" for w in design.warnings()]
    hidden = [k for k in design.varying if k not in shown and k not in sweep.replicate_keys]
    # a hidden key pools configurations only where it takes two values in one cell (one
    # aliased with the rows, such as each arm's own budget, does not)
    pooled = [
        k for k in hidden
        if any(len({hashable(t.value(k)) for t in group}) > 1 for group in cells.values())
    ]  # fmt: skip
    if pooled and not search:
        notes.append(
            f"{sweep.name}: cells pool trials that differ in {', '.join(pooled)}: they are not "
            "replicates of one configuration (add the key to rows or columns)"
        )
    return notes


def _check_keys(sweeps: list[SweepRuns], keys: list[str], metrics: list[str]) -> None:
    trials = [t for s in sweeps for t in s.with_status(COMPLETED)]
    for key in keys:
        if trials and all(t.value(key) is None and key not in t.params for t in trials):
            raise UserError("no completed trial has this config key", where=f"table key {key}")
    for metric in metrics:
        if trials and all(metric not in t.metrics for t in trials):
            raise UserError("no completed trial logged this metric", where=f"table metric {metric}")


def _rows_collide(sweeps: list[SweepRuns], row_keys: list[str]) -> bool:
    seen: dict[tuple, str] = {}
    for sweep in sweeps:
        for trial in sweep.with_status(COMPLETED):
            row = tuple(trial.value(k) for k in row_keys)
            if seen.setdefault(row, sweep.name) != sweep.name:
                return True
    return False


def _sort_key(label: tuple) -> tuple:
    return tuple((0, float(v), "") if _is_number(v) else (1, 0.0, str(v)) for v in label)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _mark(table: ComparisonTable, sweep: SweepRuns) -> None:
    """Mark the best mean per (column, metric) and the cells indistinguishable from it."""
    for col, metric in table.headers():
        cells = [
            c for r in table.rows if (c := table.cell(r, col, metric)) is not None and c.values
        ]
        if not cells:
            continue
        lower = sweep.lower_is_better(metric)
        best = (min if lower else max)(cells, key=lambda c: c.mean)
        for c in cells:
            if c is best or math.isclose(c.mean, best.mean, rel_tol=0, abs_tol=1e-15):
                c.mark = "best"
                continue
            pairs = _pairs(c, best)
            if pairs is not None:
                c.test, c.p_value = "paired t", paired_p(*pairs)
            else:
                c.test, c.p_value = "Welch t", welch_p(c.values, best.values)
            if c.p_value is not None and c.p_value >= ALPHA:
                c.mark = "tie"


def _pairs(a: Cell, b: Cell) -> tuple[list[float], list[float]] | None:
    """The two cells' values paired by replicate (same seeds, each once), else None."""
    if not a.replicates or not a.replicates[0]:
        return None
    return pair_up(
        list(zip(a.replicates, a.values, strict=True)),
        list(zip(b.replicates, b.values, strict=True)),
    )


def _mark_front(table: ComparisonTable, sweep: SweepRuns) -> None:
    """Mark, per column, the rows whose means are non-dominated over the sweep's objectives."""
    from sedsweep.report.pareto import non_dominated

    wanted = [o.metric for o in sweep.spec.objectives]
    if not sweep.spec.multi_objective or not set(wanted) <= set(table.metrics):
        return
    table.pareto = wanted
    maximise = [o.maximise for o in sweep.spec.objectives]
    for col in table.columns:
        rows, points = [], []
        for row in table.rows:
            cells = [table.cell(row, col, m) for m in wanted]
            if all(c is not None and c.values for c in cells):
                rows.append(row)
                points.append([c.mean for c in cells])  # type: ignore[union-attr]
        if rows:
            mask = non_dominated(np.array(points, dtype=float), maximise)
            table.front |= {(row, col) for row, on in zip(rows, mask, strict=True) if on}


def tag_validity(sweep: SweepRuns) -> int:
    """Tag every completed or pruned child run with its validity (`sweep.valid`, and
    `sweep.invalid_reason` when it is not valid or not judged), where the tags differ from
    what the run holds; returns the runs tagged."""
    from mlflow.entities import RunTag

    tagged = 0
    for trial in sweep.with_status(COMPLETED, PRUNED):
        verdict = sweep.validity(trial)
        wanted = verdict.tags(MAX_TAG_CHARS)
        if all(trial.tags.get(k, "") == v for k, v in wanted.items()):
            continue
        sweep.client.log_batch(trial.run_id, tags=[RunTag(k, v) for k, v in wanted.items()])
        tagged += 1
    return tagged


def untrained_arms(sweep: SweepRuns, keys: list[str]) -> list[str]:
    """One line per arm (a value of the table's row `keys`) whose completed or pruned trials
    all failed the validity gate: no number of that arm is compared with any other."""
    arms: dict[tuple, list[TrialRun]] = {}
    for trial in sweep.with_status(COMPLETED, PRUNED):
        arms.setdefault(tuple(trial.value(k) for k in keys), []).append(trial)
    lines = []
    for arm, trials in arms.items():
        if any(sweep.validity(t).valid for t in trials):
            continue
        label = ", ".join(f"{k}={_fmt_value(v)}" for k, v in zip(keys, arm, strict=True))
        lines.append(
            f"{sweep.name}: arm {label or '(all)'}: no trained trial ({len(trials)} not trained; "
            f"{short_name(trials[0])}: {sweep.validity(trials[0]).reason})"
        )
    return lines


def best_trained(sweep: SweepRuns) -> dict[str, Any] | None:
    """The sweep's best trained completed trial, as a runner's outcome holds it (its varying
    keys' values, its objective), checked by the validity gate; None when none trained."""
    ranked = sweep.ranked()
    if not ranked:
        return None
    from sedsweep.report.best import candidate_overrides

    trial = ranked[0]
    return {"config": candidate_overrides(sweep, trial),
            "metrics": {sweep.objective: trial.metric(sweep.objective)},
            "trial": short_name(trial), "checked": True}  # fmt: skip


def log_tables(sweep: SweepRuns) -> ComparisonTable:
    """Build the sweep's own table and log it (md, csv, html) to its parent run under tables/;
    with the claim checks (claims.md, claims.csv) when its file states claims. Each trial's
    validity is tagged on its run first."""
    from sedsweep.report.claims import check_claims, log_claims

    tag_validity(sweep)
    table = build_table([sweep])
    for fmt in ("md", "csv", "html"):
        path = f"{TABLES_DIR}/{sweep.name}.{fmt}"
        sweep.client.log_text(sweep.parent_run_id, table.render(fmt), path)
    if sweep.spec.claims:
        log_claims(sweep, check_claims(sweep))
    return table


def log_sweep_tables(outcome: SweepOutcome) -> None:
    """A sweep runner's `on_finish` hook: log the finished sweep's own table to its parent run.

    A table problem never fails the sweep: it becomes the parent's `sweep.table_error` tag.
    An arm (a row of the table) with no trained trial is said in one line, and the outcome's
    best becomes the best trained trial (`best_trained`).
    """
    try:
        sweep = load_sweep_runs(outcome.parent_run_id, outcome.tracking_uri)
        table = log_tables(sweep)
        for line in untrained_arms(sweep, table.row_keys):
            print(line, flush=True)
        outcome.best = best_trained(sweep)
    except UserError as exc:
        client = client_for(outcome.tracking_uri)
        client.set_tag(outcome.parent_run_id, TABLE_ERROR_TAG, str(exc)[:MAX_TAG_CHARS])
        logging.getLogger(__name__).warning("no comparison table: %s", exc)


# -- published numbers ------------------------------------------------------------------------
@functools.cache
def paper_tables() -> list[dict[str, Any]]:
    """The reference data file of published results (read once per process; do not mutate)."""
    text = resources.files("sedsweep.report").joinpath("paper_results.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def paper_value(
    methods: set[str], trials: list[TrialRun], metric: str, fixed: dict[str, Any] | None = None
) -> float | None:
    """The published number for a cell: the most specific entry all its trials match. A key
    the trials do not carry is read from `fixed` (`SweepRuns.fixed_values`: what the whole
    sweep sets, such as the SNR of a file that runs one). A table's `form` (what every row of
    it used, such as Morfi's MMM loss) rules it out for a cell whose trials are known to use
    something else; a key nothing names is at the method's default, the paper's form."""
    fixed = fixed or {}

    def value(trial: TrialRun, key: str) -> Any:
        found = trial.value(key)
        return fixed.get(key) if found is None else found

    best: tuple[int, float] | None = None
    for table in paper_tables():
        if table["method"] not in methods or metric not in table["columns"]:
            continue
        if any(
            value(t, k) is not None and not same_value(value(t, k), v)
            for t in trials
            for k, v in table.get("form", {}).items()
        ):
            continue
        for entry in table["entries"]:
            if metric not in entry["values"]:
                continue
            if all(
                same_value(value(t, k), v)
                and t.params.get("method", table["method"]) == table["method"]
                for t in trials
                for k, v in entry["match"].items()
            ) and (best is None or len(entry["match"]) > best[0]):
                best = (len(entry["match"]), float(entry["values"][metric]))
    return None if best is None else best[1]


def paper_sources(methods: set[str], metrics: list[str]) -> list[str]:
    """Which published tables the paper column comes from."""
    return [
        f"paper: {t['paper']}, {t['table']}"
        for t in paper_tables()
        if t["method"] in methods and set(metrics) & set(t["columns"])
    ]


# -- renderers --------------------------------------------------------------------------------
def _fmt_value(value: Any) -> str:
    if _is_number(value):
        return f"{value:g}"
    return "—" if value is None else str(value)


def _row_labels(table: ComparisonTable, row: tuple) -> list[str]:
    """A row's label texts; the last gets ◆ when the row is on the Pareto front."""
    labels = [_fmt_value(v) for v in row]
    if table.on_front(row) and labels:
        labels[-1] += " ◆"
    return labels


def _md_cell(table: ComparisonTable, cell: Cell | None) -> str:
    text = table.text(cell)
    if cell is not None and cell.mark == "best":
        return f"**{text}**"
    if cell is not None and cell.mark == "tie":
        return f"*{text}*"
    return text


def _value_headers(table: ComparisonTable) -> list[str]:
    out = []
    for col, metric in table.headers():
        label = table.col_label(col)
        name = f"{label} · {metric}" if label else metric
        out.append(name)
        if table.with_paper:
            out.append(f"{name} (paper)")
    return out


def _markdown(table: ComparisonTable) -> str:
    head = [*table.row_keys, *_value_headers(table)]
    lines = [
        f"**{table.title}**",
        "",
        "| " + " | ".join(head) + " |",
        "|"
        + "|".join(["---"] * len(table.row_keys) + ["---:"] * (len(head) - len(table.row_keys)))
        + "|",
    ]
    for row in table.rows:
        values = _row_labels(table, row)
        for col, metric in table.headers():
            cell = table.cell(row, col, metric)
            values.append(_md_cell(table, cell))
            if table.with_paper:
                values.append(table.paper_text(cell))
        lines.append("| " + " | ".join(values) + " |")
    lines += ["", md_text(table.legend()), *[f"- {md_text(n)}" for n in table.notes]]
    return "\n".join(lines) + "\n"


def _csv(table: ComparisonTable) -> str:
    """Tidy CSV: one line per (row, column, metric) with the replicate values."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [*table.row_keys, *table.col_keys, "metric", "mean", "std", "n", "mark", "p_value",
         "test", "paper", "values", "runs", "best", "best_trial", "best_epochs", "rung",
         "pareto", "not_trained"]
    )  # fmt: skip
    for row in table.rows:
        for col, metric in table.headers():
            cell = table.cell(row, col, metric)
            if cell is None:
                continue
            writer.writerow(
                [*row, *col, metric,
                 "" if cell.mean is None else repr(cell.mean),
                 "" if cell.std is None else repr(cell.std),
                 cell.n, cell.mark or "",
                 "" if cell.p_value is None else f"{cell.p_value:.6g}",
                 cell.test or "",
                 "" if cell.paper is None else cell.paper,
                 ";".join(repr(v) for v in cell.values), ";".join(cell.runs),
                 *(("", "", "") if cell.best is None else (repr(cell.best[0]), *cell.best[1:])),
                 "" if cell.rung is None else cell.rung,
                 ((row, col) in table.front) if table.pareto else "", cell.not_trained]
            )  # fmt: skip
    return out.getvalue()


def _html(table: ComparisonTable) -> str:
    esc = html.escape
    span = len(table.metrics) * (2 if table.with_paper else 1)
    parts = [f'<table class="comparison"><caption>{esc(table.title)}</caption><thead>']
    if table.col_keys:
        parts.append("<tr>" + "".join(f'<th rowspan="2">{esc(k)}</th>' for k in table.row_keys))
        parts += [f'<th colspan="{span}">{esc(table.col_label(c))}</th>' for c in table.columns]
        parts.append("</tr><tr>")
    else:
        parts.append("<tr>" + "".join(f"<th>{esc(k)}</th>" for k in table.row_keys))
    for _ in table.columns:
        for metric in table.metrics:
            parts.append(f"<th>{esc(metric)}</th>")
            if table.with_paper:
                parts.append(f'<th class="paper">{esc(metric)} (paper)</th>')
    parts.append("</tr></thead><tbody>")
    for row in table.rows:
        parts.append("<tr>" + "".join(f"<th>{esc(v)}</th>" for v in _row_labels(table, row)))
        for col, metric in table.headers():
            cell = table.cell(row, col, metric)
            text = esc(table.text(cell))
            if cell is not None and cell.mark == "best":
                parts.append(f'<td class="best"><strong>{text}</strong></td>')
            elif cell is not None and cell.mark == "tie":
                parts.append(f'<td class="tie"><u>{text}</u></td>')
            else:
                parts.append(f"<td>{text}</td>")
            if table.with_paper:
                parts.append(f'<td class="paper">{esc(table.paper_text(cell))}</td>')
        parts.append("</tr>")
    parts.append("</tbody></table>")
    notes = [table.legend(), *table.notes]
    parts.append('<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    return "".join(parts) + "\n"


TEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "—": "--", "α": r"$\alpha$", "·": r"$\cdot$", "◆": r"$\diamond$",
}  # fmt: skip


def _tex(text: str) -> str:
    """Escape LaTeX's special characters, one character at a time."""
    return "".join(TEX_ESCAPES.get(ch, ch) for ch in text)


def _latex(table: ComparisonTable) -> str:
    span = len(table.metrics) * (2 if table.with_paper else 1)
    n_values = len(table.columns) * span
    lines = [
        r"% needs \usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_tex(table.title)}}}",
        r"\begin{tabular}{" + "l" * len(table.row_keys) + "r" * n_values + "}",
        r"\toprule",
    ]
    lead = " & " * (len(table.row_keys) - 1)
    if table.col_keys:
        groups = [
            rf"\multicolumn{{{span}}}{{c}}{{{_tex(table.col_label(c))}}}" for c in table.columns
        ]
        lines.append(lead + " & " + " & ".join(groups) + r" \\")
    metric_heads = []
    for _ in table.columns:
        for metric in table.metrics:
            metric_heads.append(_tex(metric))
            if table.with_paper:
                metric_heads.append("paper")
    lines.append(" & ".join([_tex(k) for k in table.row_keys] + metric_heads) + r" \\")
    lines.append(r"\midrule")
    for row in table.rows:
        values = [_tex(v) for v in _row_labels(table, row)]
        for col, metric in table.headers():
            cell = table.cell(row, col, metric)
            text = _tex(table.text(cell))
            if cell is not None and cell.mark == "best":
                text = rf"\textbf{{{text}}}"
            elif cell is not None and cell.mark == "tie":
                text = rf"\underline{{{text}}}"
            values.append(text)
            if table.with_paper:
                values.append(_tex(table.paper_text(cell)))
        lines.append(" & ".join(values) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    notes = " ".join(
        _tex(n if n.endswith(".") else n + ".") for n in [table.legend(), *table.notes]
    )
    lines += [rf"\par\smallskip\footnotesize {notes}", r"\end{table}"]
    return "\n".join(lines) + "\n"
