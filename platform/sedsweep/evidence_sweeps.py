"""Run the shipped evidence sweeps and write `EVIDENCE.md` from their results CSVs.

`generate` runs each named evidence file's sweep (`run=True`) or takes its newest execution
from the tracking store (`export=True`), writes the file's MLflow-independent results
(`sedsweep.report.evidence.export`), then renders the page from every evidence file's CSVs in
the same folders, so a partial regeneration keeps the other files' sections. With `check` it
writes nothing and says whether the page on disk is what the CSVs give.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from sedsweep.errors import UserError
from sedsweep.report.evidence import (
    evidence_files,
    export_from_store,
    machine_facts,
    read_spec,
    render,
    write_page,
)
from sedsweep.report.tables import log_sweep_tables
from sedsweep.sweep.runner import run_sweep
from sedsweep.sweep.spec import load_sweep
from sedsweep.tracking import tracking_uri_for


@dataclass
class EvidenceOutcome:
    """What `generate` did."""

    exported: list[Path] = field(default_factory=list)
    up_to_date: bool = True
    incomplete: list[str] = field(default_factory=list)


def generate(
    paths: list[Path],
    *,
    out: Path,
    root: Path,
    run: bool = False,
    export: bool = False,
    check: bool = False,
    workdir: Path,
    tracking_uri: str | None = None,
) -> EvidenceOutcome:
    """Run / export the named evidence files, then render (or check) the page."""
    if check and (run or export):
        raise UserError("checks the page as it is: it cannot be combined with --run/--export",
                        where="--check")  # fmt: skip
    named = evidence_files(paths)
    for f in named:
        read_spec(f)  # a file with no claims, or an invalid one, fails before anything runs
    outcome = EvidenceOutcome()
    if run or export:
        uri = tracking_uri_for(workdir, tracking_uri)
        for f in named:
            plan = load_sweep(f)  # validated against the method before anything runs
            machine = machine_facts()
            target = plan.spec.name
            if run:
                load_before = machine["load_1_5_15"]
                started = time.time()
                result = run_sweep(
                    plan, workdir=workdir, tracking_uri=tracking_uri, on_finish=log_sweep_tables
                )
                machine = {**machine_facts(), "load_before": load_before,
                           "driver_wall_s": round(time.time() - started, 1)}  # fmt: skip
                if not result.complete:  # not exported: the file keeps its last results
                    outcome.incomplete.append(
                        f"{f}: {result.summary()}; not exported (sedsweep resume {result.path}, "
                        f"then sedsweep evidence {f} --export)"
                    )
                    continue
                target = result.parent_run_id or target
            outcome.exported.append(export_from_store(f, target, uri, machine))
    every = evidence_files(sorted({f.parent for f in named}))
    if check:
        on_disk = out.read_text() if out.exists() else ""
        outcome.up_to_date = on_disk == render(every, root)
        return outcome
    write_page(every, root, out)
    return outcome
