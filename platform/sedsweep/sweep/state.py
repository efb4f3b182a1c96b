"""A sweep execution's state file (`sedsweep.json` in its Ray directory): what `resume` and
`sync` need, with paths resolved from where the file is now (a copied or moved sweep)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sedsweep.errors import UserError
from sedsweep.fsio import write_json
from sedsweep.sweep.record import RECORD_FILE, read_record
from sedsweep.tracking import SQLITE, sqlite_db

STATE_FILE = "sedsweep.json"
_FIELD_TYPES = {"spec": dict, "offline": bool}  # every other field of SweepState is a string


@dataclass
class SweepState:
    """What a sweep execution needs to be resumed: kept as `STATE_FILE` in its Ray directory."""

    experiment: str  # Ray Tune's experiment name: the sweep name and its start time
    path: str  # Ray Tune's experiment directory
    workdir: str  # corpora and the feature cache
    tracking_uri: str
    experiment_id: str  # MLflow's ("" until an offline sweep is synced)
    parent_run_id: str  # ditto
    source: str  # the search-space file the sweep came from
    spec: dict[str, Any]  # the validated search-space spec as JSON
    execution: str  # unique id of this execution: tags every run, keys its journal replay
    offline: bool  # tracked only in the journal

    def save(self) -> None:
        """Write the state file atomically into the sweep's directory."""
        write_json(Path(self.path) / STATE_FILE, dataclasses.asdict(self))

    @classmethod
    def load(cls, path: Path) -> SweepState:
        """Read a state file; an unreadable or incomplete one is a UserError naming it.

        Paths are resolved from where the file is, not where it was written: the sweep
        directory is the file's own, and the work directory and a SQLite store keep their
        place relative to it, so a copied or moved work directory resumes into itself (never
        into the original). A path that only exists where it was written is used there.
        """
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"unreadable sweep state ({exc})", where=path) from None
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if not isinstance(data, dict) or n not in data]
        if missing:
            raise UserError(f"sweep state lacks {', '.join(missing)}", where=path)
        wrong = [f.name for f in dataclasses.fields(cls)
                 if not isinstance(data[f.name], _FIELD_TYPES.get(f.name, str))]  # fmt: skip
        if wrong:
            raise UserError(f"sweep state has fields of the wrong type: {', '.join(wrong)}",
                            where=path)  # fmt: skip
        state = cls(**{n: data[n] for n in names})
        written, here = Path(state.path), path.parent.resolve()
        if written != here:
            state.path = str(here)
            state.workdir = str(_rebased(Path(state.workdir), written, here))
            db = sqlite_db(state.tracking_uri)
            if db is not None:
                state.tracking_uri = f"{SQLITE}{_rebased(db, written, here)}"
        return state


def _rebased(old: Path, written: Path, here: Path) -> Path:
    """`old`, kept at the same place relative to the sweep directory that moved from `written`
    to `here`, when that exists (or `old` does not); else `old` itself."""
    moved = (here / os.path.relpath(old, written)).resolve()
    return moved if moved.exists() or not old.exists() else old


def find_state(target: Path) -> Path:
    """The state file of a sweep directory, or of the newest sweep under a work directory."""
    if (target / STATE_FILE).is_file():
        return target / STATE_FILE
    found = sorted(target.glob(f"ray/*/{STATE_FILE}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UserError(
            f"no sweep found (looked for {STATE_FILE} and ray/*/{STATE_FILE})", where=target
        )
    return found[-1]


def load_record(target: Path) -> dict[str, Any]:
    """The reproducibility record of a sweep directory (or of the newest sweep under a work
    directory): `sweep/record.py`."""
    return read_record(find_state(target).parent / RECORD_FILE)
