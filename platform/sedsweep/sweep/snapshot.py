"""Repairs of Ray Tune's experiment snapshot before `Tuner.restore` (Ray Tune 2.60): only the
snapshot's plain-JSON parts are read or changed; the pickles inside it are never loaded."""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from pathlib import Path

from sedsweep.errors import UserError
from sedsweep.fsio import write_json
from sedsweep.journal import Journal
from sedsweep.tracking import ENDED_SHORT_TAG


def newest_state(experiment: Path) -> Path | None:
    """Tune's newest experiment snapshot in `experiment` (the one `Tuner.restore` reads)."""
    states = sorted(experiment.glob("experiment_state-*.json"))
    return states[-1] if states else None


def check_experiment_state(experiment: Path) -> None:
    """Tune's newest experiment snapshot (what `Tuner.restore` reads), when there is one, must
    be a JSON object with its trials; else a UserError naming it: Tune would log the problem
    and start the experiment again from nothing. (A driver killed before Tune's first snapshot
    leaves none: Tune then starts the trials afresh, which is right.)"""
    newest = newest_state(experiment)
    if newest is None:
        return
    try:
        data = json.loads(newest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"unreadable Ray Tune experiment state ({type(exc).__name__})",
                        where=newest) from None  # fmt: skip
    if not isinstance(data, dict) or not isinstance(data.get("trial_data"), list):
        raise UserError("not a Ray Tune experiment state (no trial_data)", where=newest)


def recreate_deleted_checkpoints(experiment: Path) -> list[Path]:
    """Empty folders for the trial checkpoints that Tune's newest experiment snapshot still
    lists but that are gone from disk (returns them); a workaround for Ray Tune 2.60.

    With `CheckpointConfig.num_to_keep`, Tune deletes a trial's oldest kept checkpoint when it
    registers a new one and only then snapshots the experiment: a driver killed in between
    leaves a snapshot that lists a deleted checkpoint. After `resume` Tune deletes it again,
    its delete raises FileNotFoundError ("Error handling checkpoint") before the trial's
    checkpoint index is advanced, and the next checkpoint after a later restore overwrites
    the newest one; two entries then share one folder, deleting the older removes the newer,
    and a trial restored from it fails. An empty folder lets the delete succeed. Only trials
    that will run again are repaired, and only below a checkpoint that exists (the newest one
    Tune knows is always on disk: a worker writes it before reporting it). The snapshot is
    JSON; the checkpoint list inside is a pickle, read here as bytes (folder names), never
    unpickled.
    """
    newest = newest_state(experiment)
    try:
        trials = json.loads(newest.read_text())["trial_data"] if newest else []
    except (OSError, ValueError, KeyError, TypeError):
        return []
    made = []
    for entry in trials:
        try:
            trial, meta = (json.loads(part) if isinstance(part, str) else part for part in entry)
            raw = bytes.fromhex(meta["checkpoint_manager"]["value"])
            folder = experiment / trial["relative_logdir"]
        except (ValueError, KeyError, TypeError):
            continue
        if trial.get("status") == "TERMINATED" or not folder.is_dir():
            continue
        listed = {int(n) for n in re.findall(rb"checkpoint_(\d{6})(?!\d)", raw)}
        on_disk = [int(p.name[11:]) for p in folder.glob("checkpoint_[0-9]*") if p.is_dir()]
        for number in sorted(listed):
            path = folder / f"checkpoint_{number:06d}"
            if not path.exists() and any(n > number for n in on_disk):
                path.mkdir()
                made.append(path)
    return made


def ended_short(journal: Journal) -> list[str]:
    """The trials the journal records as failed for ending short with no stop decision."""
    return [
        key
        for key, run in journal.keys.items()
        if run.status == "FAILED" and ENDED_SHORT_TAG in run.tags
    ]


def reopen_ended_short(experiment: Path, trial_ids: Collection[str]) -> list[str]:
    """Mark as errored, in Tune's newest experiment snapshot, the given trials that Tune holds
    as TERMINATED (returns those changed), so that `Tuner.restore(resume_errored=True)` runs
    them again from their last checkpoint.

    For the trials the journal records as ended before their epochs with no stop decision
    (`sweep.ended_short`, FAILED): Tune counts them as finished and would never run them
    again, so a resume could not finish the sweep. Only the snapshot's plain-JSON status
    field changes; the file is rewritten atomically.
    """
    newest = newest_state(experiment)
    if not trial_ids or newest is None:
        return []
    data = json.loads(newest.read_text())
    reopened = []
    for entry in data["trial_data"]:
        trial = json.loads(entry[0])
        if trial.get("trial_id") in trial_ids and trial.get("status") == "TERMINATED":
            trial["status"] = "ERROR"
            entry[0] = json.dumps(trial)
            reopened.append(trial["trial_id"])
    if reopened:
        write_json(newest, data)
    return reopened
