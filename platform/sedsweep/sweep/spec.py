"""Search-space files: the YAML schema of a sweep, and its validation before any compute.

A file names a method, a data source, the objective, the budget, the search algorithm, the
scheduler, per-trial resources, fixed settings, the searched parameters (dotted keys into the
method's config), replicate axes and the comparison table to build. Every defect is a one-line
UserError naming the file and the key.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, model_validator

from sedsweep.config import (
    SEED_MAX,
    Strict,
    deep_merge,
    flatten,
    load_yaml,
    set_dotted,
    validate,
    with_overrides,
)
from sedsweep.data.corpus import Corpus
from sedsweep.errors import UserError
from sedsweep.metrics import selected_key
from sedsweep.runspec import (
    DataSpec,
    FeatureSpec,
    Resolved,
    RunSpec,
    check_corpus,
    check_sources,
    describe_data,
    resolve,
    split_error,
)
from sedsweep.sweep.registry import (
    SAMPLERS,
    SCHEDULERS,
    SamplerName,
    SchedulerName,
    multi_objective_samplers,
)

if TYPE_CHECKING:
    from sedsweep.methods.base import Method, MethodConfig


class Objective(Strict):
    """A metric trials are ranked by (a validation or training metric, never a test one)."""

    metric: str
    mode: Literal["max", "min"] = "max"

    @property
    def maximise(self) -> bool:
        """True when a larger value is better."""
        return self.mode == "max"


class Budget(Strict):
    """How much to run: trials (per replicate), epochs per trial, concurrency."""

    # strict: `trials: true` is not 1; the upper bounds catch typos before Ray plans them
    trials: int = Field(default=10, ge=1, le=100_000, strict=True)
    max_epochs: int | None = Field(
        default=None, ge=1, le=100_000, strict=True, description="None: the config's epochs"
    )
    max_concurrent: int | None = Field(default=None, ge=1, le=10_000, strict=True)
    max_failures: int = Field(default=0, ge=0, le=1_000, strict=True, description="retries")
    max_trials: int | None = Field(
        default=None, ge=1, le=1_000_000, strict=True,
        description="cap on trials run (e.g. a smoke test of a grid file)",
    )  # fmt: skip


DEFAULT_BATCH = 4  # trials per batch of a reproducible search when the file names none


class Search(Strict):
    """The Optuna sampler (grid: exhaustive over `grid` parameters) and its seed.

    `reproducible`: the same file and seed give the same trials, early-stopping decisions and
    best configuration on any number of workers (docs/search-spaces.md, "Reproducible
    sweeps"). Trials are suggested in batches of `batch_size` (default 4), each from the
    results of the batches before it only; ASHA becomes synchronous successive halving within
    each batch; every trial gets a seed derived from `seed` and its number; trials run with
    deterministic torch algorithms."""

    algorithm: SamplerName = "tpe"
    seed: int = Field(default=0, ge=0, le=SEED_MAX)  # Optuna's samplers seed numpy with it
    reproducible: bool = Field(default=False, strict=True)
    batch_size: int | None = Field(default=None, ge=1, le=10_000, strict=True)

    @property
    def batch(self) -> int:
        """Trials per batch of a reproducible search."""
        return self.batch_size or DEFAULT_BATCH


class Scheduler(Strict):
    """Early stopping: ASHA (default), HyperBand, the median rule, or none."""

    type: SchedulerName = "asha"
    grace_period: int = Field(default=1, ge=1)
    reduction_factor: float = Field(default=2.0, gt=1.0)
    metric: str | None = Field(
        default=None, description="the objective early stopping reads (needed with several)"
    )


class Checkpointing(Strict):
    """When a trial writes a checkpoint (`CheckpointPolicy`): always at its last epoch and at
    every epoch the scheduler decides on (ASHA's rungs; every epoch under HyperBand, which
    pauses trials there), every `every_epochs`-th epoch when set, and otherwise when
    `min_interval_s` have passed since the trial's last checkpoint (None: never by time).
    A resumed trial replays at most the epochs since its last checkpoint."""

    every_epochs: int | None = Field(default=None, ge=1, le=100_000, strict=True)
    min_interval_s: float | None = Field(default=30.0, ge=0)


class Resources(Strict):
    """Per-trial resources; `gpu` may be fractional to pack trials on one GPU."""

    cpu: float = Field(default=1.0, gt=0)
    gpu: float = Field(default=0.0, ge=0)
    features: Literal["auto", "map", "object_store"] = Field(
        default="auto",
        description="how trials get the features: map (read-only memory maps of the feature "
        "cache under --workdir, which every node must see), object_store (a copy through "
        "Ray's object store), auto (map on a local cluster or above 2 GiB, else object_store)",
    )

    @property
    def threads(self) -> int:
        """The torch threads of a trial's process: its whole CPUs, at least one (the retrain of
        `sedsweep best` uses as many)."""
        return max(int(self.cpu), 1)


class Conditional(Strict):
    """A searched key that acts only under a condition: `when: {when_loss: mmm}` (the key is
    sampled, logged and credited only where the condition holds). Each entry names a
    categorical or grid key (or an explicit cells' key) and the value, or list of values,
    under which this key acts; several entries must all hold."""

    when: dict[str, Any] | None = Field(
        default=None, description="condition keys → value (or list of values) where this acts"
    )


class FloatParam(Conditional):
    """A float in [low, high], optionally log-uniform or stepped."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(default=None, gt=0)


class IntParam(Conditional):
    """An integer in [low, high], optionally log-uniform or stepped."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(default=1, ge=1)


class CategoricalParam(Conditional):
    """One of a list of choices."""

    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)


class GridParam(Conditional):
    """Every one of a list of values (grid search only)."""

    type: Literal["grid"]
    values: list[Any] = Field(min_length=1)


Param = Annotated[FloatParam | IntParam | CategoricalParam | GridParam, Field(discriminator="type")]


class Table(Strict):
    """The comparison table: config keys for rows and columns, the metrics in every cell, and
    the replicate axes aggregated as mean ± std."""

    rows: list[str] = Field(default_factory=list)
    columns: list[str] = Field(default_factory=list)
    metrics: list[str] = Field(default_factory=list)
    replicates: list[str] = Field(default_factory=list)


class Claim(Strict):
    """A paper's assertion that one cell beats another (or each other cell) on a metric, checked
    by `sedsweep claims` over the sweep's replicates.

    A cell selector maps design keys (searched grid keys, explicit-cell keys, data axes) to
    values; `b: each` compares `a` with every other value of a's first key, its other keys
    held (one comparison each: `a: {pooling: two_step, data.options.snr_db: 0.0}` against
    every other pooling at 0 dB).
    """

    name: str = Field(min_length=1)
    source: str = Field(default="", description="where the paper says it (paper, table)")
    metric: str
    direction: Literal["higher", "lower"] = Field(description="a's metric is higher / lower")
    a: dict[str, Any] = Field(min_length=1)
    b: dict[str, Any] | Literal["each"] = "each"
    min_effect: float | None = Field(
        default=None, gt=0, description="the paper's effect: the smallest difference claimed"
    )
    equivalence_margin: float | None = Field(
        default=None, gt=0,
        description="a difference within ±margin counts as none: adds an equivalence test (TOST)",
    )  # fmt: skip


class SweepSpec(Strict):
    """A whole search-space file."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = Field(default="", description="what the sweep tests, at which size")
    method: str
    scale: str = "paper"
    data: DataSpec = Field(default_factory=DataSpec)
    features: FeatureSpec = Field(default_factory=FeatureSpec)
    objective: Objective | list[Objective] = Field(
        description="one metric, or a list of two or more for a Pareto (multi-objective) sweep"
    )
    budget: Budget = Field(default_factory=Budget)
    search: Search = Field(default_factory=Search)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    resources: Resources = Field(default_factory=Resources)
    checkpoint: Checkpointing = Field(default_factory=Checkpointing)
    fixed: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Param] = Field(default_factory=dict)
    cells: list[dict[str, Any]] = Field(
        default_factory=list, description="explicit grid cells: dotted key -> value mappings"
    )
    replicates: dict[str, list[Any]] = Field(default_factory=dict)
    table: Table = Field(default_factory=Table)
    scales: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-scale overrides of these fields (e.g. no GPU)"
    )

    claims: list[Claim] = Field(default_factory=list)

    @property
    def objectives(self) -> list[Objective]:
        """Every objective (one for a single-objective sweep)."""
        return list(self.objective) if isinstance(self.objective, list) else [self.objective]

    @property
    def multi_objective(self) -> bool:
        """True for a Pareto sweep (several objectives)."""
        return isinstance(self.objective, list)

    @property
    def primary(self) -> Objective:
        """The objective trials are ranked (and early-stopped) by: the only one, or the
        scheduler's metric, or the first listed."""
        wanted = self.scheduler.metric
        return next((o for o in self.objectives if o.metric == wanted), self.objectives[0])

    @model_validator(mode="after")
    def _replicates_not_empty(self) -> SweepSpec:
        for key, values in self.replicates.items():
            if not values:
                raise ValueError(f"replicates.{key} lists no values")
        return self


DATA_PREFIX = "data."
EPOCH_KEY = "epoch"  # the method's own epoch in every result: the sweep's time axis
EPOCHS = "epochs"  # the config key of a trial's budget; explicit cells may set their own


def finite(value: Any) -> bool:
    """A real number that is neither NaN nor infinite (what a trial's objective must be)."""
    return isinstance(value, int | float) and math.isfinite(value)


def epoch_of(result: dict[str, Any] | None) -> int:
    """The method's epoch a Tune result reports: the sweep's time axis for the scheduler, the
    searcher's steps and the tracked metric steps. Tune's `training_iteration` counts reports
    instead, and runs ahead of the method's epoch once a trial resumes from an earlier
    checkpoint than its last (or from scratch); it stands in for results without an epoch."""
    result = result or {}
    return int(result.get(EPOCH_KEY, result.get("training_iteration", 0)))


def rung_epochs(scheduler: Scheduler, max_epochs: int) -> list[int]:
    """The epochs at which the scheduler compares trials, ascending, with the last epoch.

    ASHA: milestones grace·rf^k below `max_epochs`; Ray decides on the first reported epoch
    at or past a milestone, so a fractional one rounds up. HyperBand: 1·rf^k. The median
    rule and no scheduler: every epoch (trials are comparable at any of them).
    """
    if SCHEDULERS[scheduler.type].rungs:
        first = min(scheduler.grace_period, max_epochs) if scheduler.type == "asha" else 1
        out, milestone = set(), float(first)
        while milestone < max_epochs:
            out.add(math.ceil(milestone - 1e-9))
            milestone *= scheduler.reduction_factor
        return sorted({*out, max_epochs})
    return list(range(1, max_epochs + 1))


@dataclass(frozen=True)
class CheckpointPolicy:
    """Which epochs of a trial write a checkpoint (`Checkpointing`, resolved for a sweep)."""

    always: frozenset[int]  # the last epoch, the scheduler's rungs, every_epochs multiples
    min_interval_s: float | None

    @classmethod
    def of(cls, spec: SweepSpec, epochs: int) -> CheckpointPolicy:
        c, s = spec.checkpoint, spec.scheduler
        if s.type == "hyperband":  # it pauses trials at its milestones and resumes them later
            always = set(range(1, epochs + 1))
        elif s.type == "asha":
            always = set(rung_epochs(s, epochs))
        else:
            always = {epochs}
        if c.every_epochs:
            always |= set(range(c.every_epochs, epochs + 1, c.every_epochs))
        return cls(frozenset(always), c.min_interval_s)

    def due(self, epoch: int, since_last_s: float, last: int) -> bool:
        """Whether `epoch` of a trial of `last` epochs, `since_last_s` seconds after its last
        checkpoint (or its start), writes one; its last epoch always does."""
        timed = self.min_interval_s is not None and since_last_s >= self.min_interval_s
        return epoch in self.always or epoch == last or timed


def data_part(overrides: dict[str, Any]) -> dict[str, Any]:
    """The `data.*` entries of a trial's overrides (a data axis, e.g. the SNR of a corpus)."""
    return {k: v for k, v in overrides.items() if k.startswith(DATA_PREFIX)}


def data_key(overrides: dict[str, Any]) -> str:
    """A stable name for a trial's data variant (selects its FeatureSet)."""
    return json.dumps(data_part(overrides), sort_keys=True)


def config_part(overrides: dict[str, Any]) -> dict[str, Any]:
    """The method-config entries of a trial's overrides."""
    return {k: v for k, v in overrides.items() if not k.startswith(DATA_PREFIX)}


# -- conditional keys (`when:`) ------------------------------------------------------------------
def _options(value: Any) -> list[Any]:
    """A condition's accepted values: a list of them, or one value."""
    return list(value) if isinstance(value, list) else [value]


def same_value(a: Any, b: Any) -> bool:
    """Config values equal, numbers up to rounding (0.001 vs 1e-3 as written by different
    tools), bools only to bools."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def conditions(space: dict[str, Param]) -> dict[str, dict[str, Any]]:
    """Each conditional searched key's `when:` mapping."""
    return {k: p.when for k, p in space.items() if p.when}


def is_active(key: str, values: dict[str, Any], when: dict[str, dict[str, Any]]) -> bool:
    """Whether `key` acts for a trial with `values` (its dotted-key values): every condition
    of its `when` holds, and each condition key is itself active (checked acyclic)."""
    for cond, accepted in (when.get(key) or {}).items():
        if not is_active(cond, values, when) or cond not in values:
            return False
        if not any(same_value(values[cond], v) for v in _options(accepted)):
            return False
    return True


def inactive_keys(values: dict[str, Any], when: dict[str, dict[str, Any]]) -> set[str]:
    """The conditional keys that do not act for a trial with `values`."""
    return {k for k in when if not is_active(k, values, when)}


def condition_order(space: dict[str, Param]) -> list[str]:
    """The searched keys ordered so that every key comes after the keys its `when` reads
    (the order a define-by-run search suggests them in); the file's order otherwise."""
    when = conditions(space)
    done: list[str] = []

    def visit(key: str) -> None:
        if key in done:
            return
        for cond in when.get(key, {}):
            if cond in space:
                visit(cond)
        done.append(key)

    for key in space:
        visit(key)
    return done


def trial_config(
    base_config: dict[str, Any], overrides: dict[str, Any], epochs: int
) -> dict[str, Any]:
    """The full config of one trial: the sweep's base config, the sweep's `epochs` and the
    trial's values (a cell that sets `epochs` has its own budget: `trial_budget`)."""
    return with_overrides(base_config, {"epochs": epochs, **config_part(overrides)})


def trial_budget(overrides: dict[str, Any], epochs: int) -> int:
    """The epochs a trial runs when nothing stops it: its cell's `epochs`, else the sweep's."""
    return int(overrides.get(EPOCHS, epochs))


def trial_method_config(
    method_cls: type[Method], base_config: dict[str, Any], overrides: dict[str, Any], epochs: int
) -> MethodConfig:
    """`trial_config` validated as the method's config (what a trial's method is built with)."""
    return method_cls.Config.model_validate(trial_config(base_config, overrides, epochs))


@dataclass
class SweepPlan:
    """A validated sweep: the spec, the resolved base run, and the trial arithmetic."""

    spec: SweepSpec
    source: str
    base: Resolved

    @cached_property
    def epochs(self) -> int:
        """The longest trial's budget (the same for all unless cells set their own)."""
        return max(self.budget(cell) for cell in self.grid_cells)

    def budget(self, overrides: dict[str, Any]) -> int:
        """The epochs the trial with these overrides runs when nothing stops it early."""
        return trial_budget(overrides, self.base_epochs)

    @property
    def base_epochs(self) -> int:
        """The budget of a trial whose cell sets no `epochs`."""
        return self.spec.budget.max_epochs or self.base.config.epochs

    def objective_value(self, metrics: dict[str, Any] | None) -> float | None:
        """A trial's primary objective in `metrics` (its selected value, what trials are
        ranked by), or None when it is missing or not finite."""
        value = (metrics or {}).get(selected_key(self.spec.primary.metric))
        return float(value) if finite(value) else None

    @property
    def grid_cells(self) -> list[dict[str, Any]]:
        """Every combination of grid parameters (one empty cell when there is no grid); a
        conditional key is left out of the cells where it does not act, and the cells that
        then coincide are one cell, not several."""
        grid = {k: p.values for k, p in self.spec.space.items() if isinstance(p, GridParam)}
        keys = list(grid)
        when = conditions(self.spec.space)
        cells: list[dict[str, Any]] = []
        for cell in self.spec.cells or [{}]:
            for combo in itertools.product(*grid.values()):
                full = {**flatten(cell), **dict(zip(keys, combo, strict=True))}
                for key in inactive_keys(full, when):
                    full.pop(key, None)
                if full not in cells:
                    cells.append(full)
        return cells

    @property
    def data_variants(self) -> list[dict[str, Any]]:
        """The distinct `data.*` settings the grid crosses (one empty variant when none)."""
        variants: list[dict[str, Any]] = []
        for cell in self.grid_cells:
            variant = data_part(cell)
            if variant not in variants:
                variants.append(variant)
        return variants or [{}]

    def data_spec(self, variant: dict[str, Any]) -> DataSpec:
        """The sweep's data source with one variant's `data.*` values applied."""
        dotted = {k.removeprefix(DATA_PREFIX): v for k, v in variant.items()}
        return DataSpec.model_validate(with_overrides(self.spec.data.model_dump(), dotted))

    def variant_run(self, variant: dict[str, Any]) -> Resolved:
        """The base run with one data variant's source."""
        data = self.data_spec(variant)
        return replace(self.base, spec=self.base.spec.model_copy(update={"data": data}))

    @property
    def replicate_cells(self) -> list[dict[str, Any]]:
        """Every combination of replicate values (one empty cell when there are none)."""
        keys = list(self.spec.replicates)
        values = itertools.product(*self.spec.replicates.values())
        return [dict(zip(keys, combo, strict=True)) for combo in values]

    @property
    def n_trials(self) -> int:
        """Trials the sweep runs: grid cells (or the trial budget) × replicate cells."""
        per_replicate = (
            len(self.grid_cells)
            if self.spec.search.algorithm == "grid"
            else self.spec.budget.trials
        )
        planned = per_replicate * len(self.replicate_cells)
        return min(planned, self.spec.budget.max_trials or planned)

    def describe(self) -> str:
        """The resolved plan as text for `--dry-run`."""
        s = self.spec
        lines = [
            f"sweep {s.name} ({self.source}): method {s.method}, scale {s.scale}",
            "objective "
            + ", ".join(f"{o.metric} ({o.mode})" for o in s.objectives)
            + f"; search {s.search.algorithm} "
            f"(seed {s.search.seed}); scheduler {s.scheduler.type}",
            f"trials {self.n_trials} = "
            + (
                f"{len(self.grid_cells)} grid cells"
                if s.search.algorithm == "grid"
                else f"{s.budget.trials} searched"
            )
            + f" × {len(self.replicate_cells)} replicate cells; up to {self.epochs} epochs each",
            f"resources per trial: {s.resources.cpu:g} CPU, {s.resources.gpu:g} GPU; "
            f"max concurrent: {s.budget.max_concurrent or 'as resources allow'}",
            "space:",
        ]
        lines += [
            f"  {k}: {p.model_dump(exclude_none=True, exclude={'when'})}"
            + (f" only when {when_text(p.when)}" if p.when else "")
            for k, p in s.space.items()
        ] or ["  (none)"]
        if s.replicates:
            lines.append(f"replicates: {s.replicates}")
        for claim in s.claims:
            versus = "each other cell" if claim.b == "each" else claim.b
            lines.append(
                f"claim {claim.name!r}: {claim.a} {claim.direction} than {versus} on "
                f"{claim.metric}" + (f" (source: {claim.source})" if claim.source else "")
            )
        for variant in self.data_variants:
            if variant:
                lines.append(f"data variant {variant}:")
            lines += describe_data(self.variant_run(variant), self.source)
        lines.append("base config (defaults ← scale ← fixed):")
        lines += [f"  {line}" for line in _yaml(self.base.config.model_dump(mode="json"))]
        return "\n".join(lines)


def when_text(when: dict[str, Any]) -> str:
    """'when_loss = mmm and pooling in [two_step, atrous]'."""
    return " and ".join(
        f"{k} in [{', '.join(map(str, v))}]" if isinstance(v, list) else f"{k} = {v}"
        for k, v in when.items()
    )


def _yaml(data: dict[str, Any]) -> list[str]:
    import yaml

    return yaml.safe_dump(data, sort_keys=False).rstrip().splitlines()


def load_sweep(
    path: str | Path, overrides: dict[str, Any] | None = None, scale: str | None = None
) -> SweepPlan:
    """Read a search-space file, apply `--set`/`--scale`, validate it against the method."""
    source = str(path)
    for key in overrides or {}:
        if key.startswith("space."):
            raise UserError(
                "a searched parameter is keyed by a dotted config key (space.optim.lr), which "
                "--set cannot address: change it in the search-space file",
                where=f"--set {key}",
            )
    raw = read_sweep_file(path, scale)
    try:
        return _plan(raw, overrides or {}, source)
    except UserError:
        if overrides:
            _blame_an_override(raw, overrides, source)
        raise


def _plan(raw: dict[str, Any], overrides: dict[str, Any], source: str) -> SweepPlan:
    return plan_sweep(validate(SweepSpec, with_overrides(raw, overrides), source), source)


def _blame_an_override(raw: dict[str, Any], overrides: dict[str, Any], source: str) -> None:
    """When the file is valid on its own and one `--set` alone makes it invalid, raise that
    error as the `--set`'s (else return: the file's own error, or the combination's, stands)."""
    try:
        _plan(raw, {}, source)
    except UserError:
        return
    for key, value in overrides.items():
        try:
            _plan(raw, {key: value}, source)
        except UserError as alone:
            raise UserError(alone.message, where=f"--set {key}") from None


def read_sweep_file(path: str | Path, scale: str | None = None) -> dict[str, Any]:
    """A search-space file's mapping with its `scales:` entry for the chosen scale (`scale`, else
    the file's own) merged in; not yet validated."""
    raw = load_yaml(path)
    if scale:
        raw["scale"] = scale
    per_scale = raw.get("scales", {})
    if isinstance(per_scale, dict) and isinstance(per_scale.get(raw.get("scale", "paper")), dict):
        raw = deep_merge(raw, per_scale[raw.get("scale", "paper")])
    return raw


def plan_sweep(spec: SweepSpec, source: str, *, check_data: bool = True) -> SweepPlan:
    """Validate a spec against its method's config: fixed keys, every searched value, replicates;
    and, with `check_data`, a corpus directory against the method (`check_corpus`: its manifest
    must be there). Without it the plan needs no corpus (e.g. to count trials when a journal is
    replayed on another machine)."""
    run = RunSpec(
        method=spec.method, scale=spec.scale, data=spec.data, features=spec.features, config={}
    )
    fixed = flatten(spec.fixed)
    for key, value in fixed.items():
        set_dotted(run.config, key, value)
    base = resolve(run, where=source, section="fixed")
    _check_objectives(spec, source)
    for n, metric in enumerate(spec.table.metrics):
        check_metric(spec.method, metric, f"{source}: table.metrics[{n}]")
    is_grid = spec.search.algorithm == "grid"
    for key, param in spec.space.items():
        where = f"{source}: space.{key}"
        if key in fixed:
            raise UserError("is both fixed and searched", where=where)
        if isinstance(param, GridParam) != is_grid:
            raise UserError(
                "grid values need search.algorithm: grid"
                if not is_grid
                else f"a grid search takes only 'grid' parameters, not {param.type!r}",
                where=where,
            )
        if key.startswith(DATA_PREFIX) and not isinstance(param, GridParam):
            raise UserError("a data axis must be a grid parameter", where=where)
        for value in _probe_values(param, where):
            _check_value(base, key, value, where)
    _check_conditions(spec, source)
    if spec.replicates and not is_grid:
        raise UserError(
            "replicates repeat grid cells: they need search.algorithm: grid",
            where=f"{source}: replicates",
        )
    if spec.cells and not is_grid:
        raise UserError("explicit cells need search.algorithm: grid", where=f"{source}: cells")
    for n, cell in enumerate(spec.cells):
        for key, value in flatten(cell).items():
            where = f"{source}: cells[{n}].{key}"
            if key in fixed or key in spec.space:
                raise UserError("is also fixed or searched", where=where)
            _check_value(base, key, value, where)
            if key == EPOCHS:
                _check_cell_budget(spec, value, where)
                if spec.budget.max_epochs:  # the budget caps every arm (a smoke run's 1 epoch)
                    cell[EPOCHS] = min(value, spec.budget.max_epochs)
    if EPOCHS in spec.space:
        raise UserError(
            "epochs are not searched: a scheduler stops trials early, and explicit cells may "
            "each set their own",
            where=f"{source}: space.{EPOCHS}",
        )
    for key, values in spec.replicates.items():
        for value in values:
            _check_value(base, key, value, f"{source}: replicates.{key}")
    _check_reproducible(spec, source)
    plan = SweepPlan(spec=spec, source=source, base=base)
    _check_claims(plan)
    for variant in plan.data_variants if check_data else []:  # a corpus it cannot split: now
        run = plan.variant_run(variant)
        check_sources(run.spec.data, source)
        if run.spec.data.path:
            corpus = Corpus.load(run.spec.data.path)
            check_selection_split(plan, check_corpus(run, corpus, source),
                                  [c.fold for c in corpus.clips])  # fmt: skip
    return plan


def _check_cell_budget(spec: SweepSpec, value: Any, where: str) -> None:
    """A cell's own `epochs` (an arm that needs longer to converge; the method's config has
    checked the number) needs no scheduler (its rungs and `max_t` assume one budget)."""
    if spec.scheduler.type != "none":
        raise UserError(
            f"a cell's own epochs need scheduler: none (the {spec.scheduler.type} scheduler "
            "compares trials on one budget)",
            where=where,
        )


def check_selection_split(plan: SweepPlan, splits: Any, clip_folds: Any) -> None:
    """Trials are ranked by their objectives, validation metrics: a split with no validation
    clips is refused with the corpus's fold layout before any trial runs (Tune crashed after
    the training)."""
    if len(splits.val) == 0 and any(o.metric.startswith("val/") for o in plan.spec.objectives):
        raise split_error(ValueError("the validation split is empty, and the objective is a "
                                     "validation metric"), clip_folds, plan.source)  # fmt: skip


def _check_conditions(spec: SweepSpec, source: str) -> None:
    """Each `when:` reads a categorical or grid key (or an explicit cells' key) with values it
    can take, never the key itself, and the conditions form no cycle."""
    cell_values: dict[str, list[Any]] = {}
    for cell in spec.cells:
        for key, value in flatten(cell).items():
            cell_values.setdefault(key, []).append(value)
    when = conditions(spec.space)
    for key, mapping in when.items():
        where = f"{source}: space.{key}.when"
        for cond, accepted in mapping.items():
            if cond == key:
                raise UserError("a key cannot act on a condition on itself", where=where)
            param = spec.space.get(cond)
            if param is None and cond not in cell_values:
                discrete = (CategoricalParam, GridParam)
                known = [k for k, p in spec.space.items() if isinstance(p, discrete)]
                known += list(cell_values)
                raise UserError(
                    f"{cond!r} is not a searched categorical or grid key "
                    f"(those are: {', '.join(known) or 'none'})",
                    where=where,
                )
            if param is not None and not isinstance(param, CategoricalParam | GridParam):
                raise UserError(
                    f"{cond!r} is a {param.type} parameter: a condition reads a categorical "
                    "or grid key",
                    where=where,
                )
            values = (
                cell_values[cond] if param is None
                else param.choices if isinstance(param, CategoricalParam) else param.values
            )  # fmt: skip
            for value in _options(accepted):
                if not any(same_value(value, v) for v in values):
                    raise UserError(
                        f"{cond} never takes {value!r} (it takes {', '.join(map(repr, values))})",
                        where=where,
                    )
    _check_acyclic(when, source)


def _check_acyclic(when: dict[str, dict[str, Any]], source: str) -> None:
    """Refuse conditions that depend on themselves through other keys (a → b → a)."""
    done: set[str] = set()

    def visit(key: str, path: list[str]) -> None:
        if key in path:
            cycle = " → ".join([*path[path.index(key) :], key])
            raise UserError(f"the conditions form a cycle: {cycle}",
                            where=f"{source}: space.{path[0]}.when")  # fmt: skip
        if key in done:
            return
        for cond in when.get(key, {}):
            visit(cond, [*path, key])
        done.add(key)

    for key in when:
        visit(key, [])


SEED_KEYS = ("seed", "split_seed")  # what a reproducible search sets per trial


def trial_seed(sweep_seed: int, number: int) -> int:
    """The seed of trial `number` in a reproducible search: a 31-bit word of numpy's
    SeedSequence([sweep_seed, number]), so neighbouring trials' streams are independent."""
    import numpy as np

    return int(np.random.SeedSequence([sweep_seed, number]).generate_state(1)[0] >> 1)


def _check_reproducible(spec: SweepSpec, source: str) -> None:
    """A reproducible search runs ASHA's rungs as synchronous successive halving, or no early
    stopping: HyperBand's brackets and the median rule decide on whoever reported first."""
    s = spec.search
    if not s.reproducible:
        if s.batch_size is not None:
            raise UserError(
                "batches are for a reproducible search (search.reproducible: true)",
                where=f"{source}: search.batch_size",
            )
        return
    if not SCHEDULERS[spec.scheduler.type].reproducible:
        fits = " or ".join(n for n, kind in SCHEDULERS.items() if kind.reproducible)
        raise UserError(
            f"a reproducible search stops trials early with {fits} (asha runs as synchronous "
            f"successive halving), not {spec.scheduler.type!r}",
            where=f"{source}: scheduler.type",
        )
    axes = {*spec.space, *spec.replicates, *(k for c in spec.cells for k in flatten(c))}
    if "split_seed" in axes:
        raise UserError(
            "a reproducible search keeps one validation split for every trial",
            where=f"{source}: split_seed",
        )


def _check_objectives(spec: SweepSpec, source: str) -> None:
    """Objective metrics are SPLIT/NAME, never test ones, and declared by the method; several
    objectives need a sampler that handles them and a scheduler that is off or names one."""
    objectives = spec.objectives
    key = "objective" if spec.multi_objective else "objective.metric"
    if spec.multi_objective and len(objectives) < 2:
        raise UserError(
            "a Pareto objective lists two or more metrics (one metric: a mapping)",
            where=f"{source}: objective",
        )
    seen: set[str] = set()
    for n, objective in enumerate(objectives):
        where = f"{source}: {key}" + (f"[{n}].metric" if spec.multi_objective else "")
        if objective.metric.startswith("test/"):
            raise UserError(
                "the objective must not be a test metric (selection never sees the test split)",
                where=where,
            )
        check_metric(spec.method, objective.metric, where)
        if objective.metric in seen:
            raise UserError("is listed twice", where=where)
        seen.add(objective.metric)
    wanted = spec.scheduler.metric
    if wanted is not None and wanted not in seen:
        raise UserError(
            f"is not an objective metric ({', '.join(sorted(seen))})",
            where=f"{source}: scheduler.metric",
        )
    if spec.multi_objective:
        if not SAMPLERS[spec.search.algorithm].multi_objective:
            raise UserError(
                f"{spec.search.algorithm!r} cannot search several objectives "
                f"(use one of {', '.join(multi_objective_samplers())})",
                where=f"{source}: search.algorithm",
            )
        if spec.scheduler.type != "none" and wanted is None:
            raise UserError(
                "several objectives: name the one early stopping reads (scheduler.metric) "
                "or set scheduler.type: none",
                where=f"{source}: scheduler",
            )


SPLITS = ("train", "val", "test", "best_val")


def check_metric(method: str, metric: str, where: str) -> None:
    """`metric` is SPLIT/NAME with a name the method's evaluation reports (train: any name)."""
    from sedsweep.methods import get_method

    split, _, name = metric.partition("/")
    if not name or split not in SPLITS:
        raise UserError(
            f"expected SPLIT/NAME with SPLIT one of {', '.join(SPLITS)}, e.g. val/when_frame_auc"
            f", not {metric!r}",
            where=where,
        )
    known = get_method(method).metric_names()
    if split != "train" and name not in known:
        raise UserError(
            f"{method} logs no metric {name!r} (it logs: {', '.join(sorted(known))})",
            where=where,
        )


def design_cells(plan: SweepPlan) -> list[dict[str, Any]]:
    """The grid's cells with every design key filled in: a key a cell does not set has the
    base config's (or data spec's) value there, as its trials will log it; a conditional key
    where it does not act has None (its trials do not log it)."""
    keys = list(dict.fromkeys(k for cell in plan.grid_cells for k in cell))
    config = flatten(plan.base.config.model_dump(mode="json"))
    data = flatten(plan.spec.data.model_dump(mode="json"), DATA_PREFIX)
    when = conditions(plan.spec.space)
    return [
        {
            k: cell[k] if k in cell else None if k in when else config.get(k, data.get(k))
            for k in keys
        }
        for cell in plan.grid_cells
    ]


def matches(cell: dict[str, Any], selector: dict[str, Any]) -> bool:
    """A design cell (or a trial's values) agrees with every key of a claim's cell selector."""
    return all(k in cell and cell[k] == v for k, v in selector.items())


def _check_claims(plan: SweepPlan) -> None:
    """Each claim names a logged metric and cells the grid has; before anything runs."""
    spec, source = plan.spec, plan.source
    if not spec.claims:
        return
    if spec.search.algorithm != "grid":
        raise UserError(
            "claims compare cells over replicates: they need search.algorithm: grid",
            where=f"{source}: claims",
        )
    cells = design_cells(plan)
    design: dict[str, list[Any]] = {}
    for cell in cells:
        for key, value in cell.items():
            if value not in design.setdefault(key, []):
                design[key].append(value)
    for n, claim in enumerate(spec.claims):
        where = f"{source}: claims[{n}]"
        check_metric(spec.method, claim.metric, f"{where}.metric")
        chosen: dict[str, list[int]] = {}
        selectors = {"a": claim.a} | ({"b": claim.b} if isinstance(claim.b, dict) else {})
        for side, selector in selectors.items():
            for key, value in flatten(selector).items():
                if key not in design:
                    raise UserError(
                        f"{key!r} is not a key the grid varies ({', '.join(design) or 'none'})",
                        where=f"{where}.{side}",
                    )
                if value not in design[key]:
                    raise UserError(
                        f"no cell has {key} = {value!r} (the grid has "
                        f"{', '.join(map(repr, design[key]))})",
                        where=f"{where}.{side}",
                    )
            chosen[side] = [i for i, c in enumerate(cells) if matches(c, flatten(selector))]
            if not chosen[side]:
                raise UserError(
                    "no cell of the grid matches this selector", where=f"{where}.{side}"
                )
        if "b" in chosen and set(chosen["a"]) & set(chosen["b"]):
            raise UserError("a and b select some of the same cells", where=f"{where}.b")
        first = next(iter(flatten(claim.a)))
        if claim.b == "each" and len(design[first]) < 2:
            raise UserError(f"b: each needs another value of {first}", where=f"{where}.b")


def _probe_values(param: Param, where: str) -> list[Any]:
    """The values that must all be valid for the parameter to be searchable."""
    if isinstance(param, FloatParam | IntParam):
        if param.low > param.high:
            raise UserError(f"low ({param.low}) > high ({param.high})", where=where)
        if param.log and param.low <= 0:
            raise UserError(f"a log range must be > 0, not low = {param.low}", where=where)
        if param.log and param.step not in (None, 1):
            raise UserError("log and step cannot be combined", where=where)
        if not (math.isfinite(param.low) and math.isfinite(param.high)):
            raise UserError("low and high must be finite", where=where)
        if param.step and not math.isclose(
            round((param.high - param.low) / param.step) * param.step, param.high - param.low
        ):
            raise UserError(f"high - low is not a multiple of step {param.step}", where=where)
        return [param.low, param.high]
    return list(param.choices if isinstance(param, CategoricalParam) else param.values)


def _check_value(base: Resolved, key: str, value: Any, where: str) -> Any:
    """Validate the base config (or, for `data.*`, the data spec) with `key` set to `value`."""
    if key.startswith(DATA_PREFIX):
        raw = with_overrides(base.spec.data.model_dump(), {key.removeprefix(DATA_PREFIX): value})
        return validate(DataSpec, raw, where)
    data = with_overrides(base.config.model_dump(mode="json"), {key: value})
    try:
        return validate(type(base.config), data, where)
    except UserError as exc:
        raise UserError(
            f"{value!r} rejected by {base.spec.method}: {exc.message}", where=where
        ) from None
