"""A sweep's reproducibility record, the Optuna journal beside it, and `sedsweep compare`.

At the end of every execution the runner writes, in the sweep's directory:

- `reproducibility.json`: what decides whether two executions are the same sweep — the spec's
  hash, a content digest of each data variant's features, package versions, and the sweep's trace:
  every suggested configuration in trial-number order, every early-stopping decision, every
  trial's objective at every epoch and its outcome. It is also logged on the parent run, with
  the trace's hash as the tag `sweep.trace_sha256`.
- `optuna-journal.log`: the Optuna study in Optuna's own journal format (JSON lines), for
  `optuna-dashboard <sweep dir>/optuna-journal.log`. While the sweep runs the same file is
  written live (`live_journal.py`); this rewrite puts the trials in number order and keeps
  the start and end times the live journal saw.

Both are made from the searcher's last saved state (the JSON Tune snapshots with the
experiment), so they describe what the search saw, whichever execution finished the sweep.

`compare_records` walks two traces in the order a reproducible sweep produces them — per
batch: its suggestions, then each epoch's objective values and the rung decided there, then
the outcomes — and names the first event that differs.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from sedsweep.config import flatten
from sedsweep.errors import UserError
from sedsweep.features import ENTRY_FILE, FeatureSet
from sedsweep.fsio import write_json
from sedsweep.sweep.spec import SweepPlan

RECORD_FILE = "reproducibility.json"
JOURNAL_FILE = "optuna-journal.log"
RECORD_FORMAT = "sedsweep.reproducibility/1"
PACKAGES = ("sedsweep", "torch", "numpy", "optuna", "ray", "mlflow", "librosa", "scikit-learn")


def newest_searcher_state(experiment: Path) -> Path | None:
    """The searcher state Tune saved last in an experiment directory (None: none yet)."""
    found = sorted(experiment.glob("searcher-state-*.pkl"))
    return found[-1] if found else None


def _sha256(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode("utf-8")).hexdigest()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def content_digest(features: FeatureSet) -> str:
    """What the trials train on, by content: the feature cache entry's checksums of its files
    (computed when it was written; the data hashed here when it is not from the cache), the
    labels, folds and clip ids. Unlike the corpus fingerprint (audio sizes and modification
    times, the cache's cheap key) it is the same for two copies of the same data."""
    import numpy as np

    h = hashlib.sha256()
    entry = features.cache_path / ENTRY_FILE if features.cache_path else None
    if entry is not None and entry.is_file():
        h.update(json.dumps(json.loads(entry.read_text())["digests"], sort_keys=True).encode())
    else:
        for array in (features.data, features.offsets):
            h.update(np.ascontiguousarray(array).tobytes())
    for array in (features.weak, features.folds, features.verified):
        h.update(np.ascontiguousarray(array).tobytes())
    h.update(json.dumps([features.classes, features.clip_ids]).encode())
    return h.hexdigest()[:24]


def build_record(plan: SweepPlan, features: dict[str, FeatureSet], search: Any) -> dict[str, Any]:
    """The record of a sweep whose searcher (`OptunaPruningSearch`, restored from its last
    saved state) is `search`."""
    s = plan.spec
    trials = sorted(search.study.get_trials(deepcopy=False), key=lambda t: t.number)
    trace = {
        "batch_size": search.halving.batch if s.search.reproducible else 1,
        "suggestions": [{"number": t.number, "overrides": search.overrides(t)} for t in trials],
        "decisions": [
            {"first": first, "rung": rung, "kept": kept}
            for (first, rung), kept in search.halving.decisions.items()
        ],
        "objective": {
            str(t.number): {str(e): v for e, v in sorted(t.intermediate_values.items())}
            for t in trials
        },
        "outcomes": {str(t.number): {"state": t.state.name, "values": t.values} for t in trials},
    }
    return {
        "format": RECORD_FORMAT,
        "sweep": s.name,
        "reproducible": s.search.reproducible,
        "spec_sha256": _sha256(s.model_dump(mode="json")),
        "spec": flatten(s.model_dump(mode="json")),
        "data": {variant: content_digest(f) for variant, f in sorted(features.items())},
        "packages": _versions(),
        "platform": f"{platform.system()} {platform.machine()}; {sys.byteorder}-endian",
        "trace_sha256": _sha256(trace),
        "trace": trace,
    }


def write_record(
    plan: SweepPlan, features: dict[str, FeatureSet], experiment: Path
) -> dict[str, Any] | None:
    """Write `RECORD_FILE` and `JOURNAL_FILE` in the sweep's directory from the searcher's
    last saved state; returns the record (None when Tune saved no searcher state)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from sedsweep.fsio import temp_dir_for
    from sedsweep.sweep.live_journal import timed, times
    from sedsweep.sweep.search import OptunaPruningSearch

    saved = newest_searcher_state(experiment)
    if saved is None:
        return None
    search = OptunaPruningSearch(plan)
    search.restore(str(saved))
    record = build_record(plan, features, search)
    write_json(experiment / RECORD_FILE, record)
    journal = experiment / JOURNAL_FILE
    when = times(journal)  # what the live journal saw (live_journal.py), kept
    folder = temp_dir_for(journal)  # Optuna appends to a journal: written whole, then renamed
    try:
        storage = JournalStorage(JournalFileBackend(str(folder / JOURNAL_FILE)))
        study = optuna.create_study(
            storage=storage, study_name=plan.spec.name, directions=search.directions
        )
        study.add_trials([timed(t, when) for t in search.study.get_trials(deepcopy=False)])
        (folder / JOURNAL_FILE).replace(journal)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return record


def read_record(path: Path) -> dict[str, Any]:
    """A `RECORD_FILE`; a one-line UserError when it is missing or not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            "no reproducibility record (written when an execution of the sweep ends)",
            where=str(path),
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"unreadable ({type(exc).__name__})", where=str(path)) from None
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
        raise UserError(f"not a {RECORD_FORMAT} record", where=str(path))
    return data


@dataclass
class Comparison:
    """What `compare_records` found: `first` is None when the traces agree."""

    first: str | None
    notes: list[str]
    events: int

    @property
    def same(self) -> bool:
        return self.first is None

    def render(self, a: str, b: str) -> str:
        lines = [f"note: {n}" for n in self.notes]
        if self.same:
            lines.append(f"same sweep: {a} and {b} agree on all {self.events} events "
                         "(suggestions, objective values, decisions, outcomes)")  # fmt: skip
        else:
            lines.append(f"different: {a} and {b} first diverge at {self.first}")
        return "\n".join(lines) + "\n"


def _events(trace: dict[str, Any]) -> list[tuple[str, Any]]:
    """A trace as an ordered list of (what, value): per batch, the suggestions, then epoch
    by epoch each trial's objective and the rung decided there, then the outcomes."""
    size = int(trace["batch_size"])
    numbers = [int(s["number"]) for s in trace["suggestions"]]
    overrides = {int(s["number"]): s["overrides"] for s in trace["suggestions"]}
    decided = {(int(d["first"]), int(d["rung"])): d["kept"] for d in trace["decisions"]}
    out: list[tuple[str, Any]] = []
    for first in range(0, (max(numbers) + 1) if numbers else 0, size):
        batch = [n for n in numbers if first <= n < first + size]
        out += [(f"trial {n}'s suggestion", overrides[n]) for n in batch]
        epochs = sorted({int(e) for n in batch for e in trace["objective"].get(str(n), {})})
        for epoch in epochs:
            for n in batch:
                value = trace["objective"].get(str(n), {}).get(str(epoch))
                if value is not None:
                    out.append((f"trial {n}'s objective at epoch {epoch}", value))
            if (first, epoch) in decided:
                out.append((f"the decision at epoch {epoch} for trials {batch[0]}-{batch[-1]}",
                            {"kept": decided[(first, epoch)]}))  # fmt: skip
        out += [(f"trial {n}'s outcome", trace["outcomes"].get(str(n))) for n in batch]
    return out


def _equal(x: Any, y: Any, tolerance: float) -> bool:
    if isinstance(x, float) and isinstance(y, float):
        return x == y or math.isclose(x, y, rel_tol=0.0, abs_tol=tolerance)
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_equal(x[k], y[k], tolerance) for k in x)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(_equal(u, v, tolerance) for u, v in zip(x, y, strict=True))
    return bool(x == y)


def compare_records(a: dict[str, Any], b: dict[str, Any], tolerance: float = 0.0) -> Comparison:
    """Whether two executions are the same sweep (objective values equal within `tolerance`,
    absolute; 0: bit-equal) and, if not, the first event where they differ. Differences in
    context (spec, data, packages) are notes: they explain a divergence, they are not one."""
    notes = []
    sa, sb = a.get("spec", {}), b.get("spec", {})
    fields = sorted(k for k in set(sa) | set(sb) if sa.get(k) != sb.get(k))
    if fields:
        notes.append("the search-space files differ in " + ", ".join(
            f"{k} ({sa.get(k)!r} vs {sb.get(k)!r})" for k in fields))  # fmt: skip
    for key, what in (("data", "the features trials train on differ"),
                      ("platform", "the platforms differ")):  # fmt: skip
        if a.get(key) != b.get(key):
            notes.append(f"{what}: {a.get(key)} vs {b.get(key)}")
    pa, pb = a.get("packages", {}), b.get("packages", {})
    for name in sorted(set(pa) | set(pb)):
        if pa.get(name) != pb.get(name):
            notes.append(f"{name} {pa.get(name)} vs {pb.get(name)}")
    if not (a.get("reproducible") and b.get("reproducible")):
        notes.append("not both reproducible (search.reproducible): an asynchronous sweep "
                     "depends on timing and is expected to diverge")  # fmt: skip
    ea, eb = _events(a["trace"]), _events(b["trace"])
    for (what, x), (other, y) in zip(ea, eb, strict=False):
        if what != other:
            return Comparison(f"{what} (the other has {other} there)", notes, len(ea))
        if not _equal(x, y, tolerance):
            return Comparison(f"{what}: {_show(x)} vs {_show(y)}", notes, len(ea))
    if len(ea) != len(eb):
        longer = "the first" if len(ea) > len(eb) else "the second"
        what = (ea[len(eb)] if len(ea) > len(eb) else eb[len(ea)])[0]
        return Comparison(f"{what}: only {longer} has it", notes, max(len(ea), len(eb)))
    return Comparison(None, notes, len(ea))


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 300 else text[:297] + "..."
