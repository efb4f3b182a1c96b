"""The record of synchronous successive halving (a reproducible search's ASHA), as plain data.

Trials are suggested in batches of `batch` (numbers first .. first+batch-1). At each rung
(an epoch where trials are compared) a batch's decision is taken once, when every trial of
the batch still in the race has reached the rung or ended, by `halving`; it is kept, so a
replayed epoch after a resume gets the same answer. The searcher (`search.py`) keeps this
record and saves it with its state as JSON; the Tune scheduler (`halving.py`) asks it what a
trial at a rung, or a paused trial, may do. Neither Ray nor Optuna is imported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["continue", "stop", "wait"]
Standing = Literal["run", "stop", "wait"]


def halving(values: dict[int, float | None], reduction_factor: float, maximise: bool) -> list[int]:
    """Synchronous successive halving at one rung (Jamieson & Talwalkar 2016; the synchronous
    SHA of Li et al. 2020, of which ASHA is the asynchronous form): of the m trials that
    reached it, keep the best max(1, floor(m / reduction_factor)). `values` maps trial number
    to its objective at the rung (None: not finite, ranked last); ties go to the lower trial
    number. Returns the kept numbers, ascending."""
    sign = -1.0 if maximise else 1.0
    ranked = sorted(values, key=lambda n: (values[n] is None, sign * (values[n] or 0.0), n))
    keep = max(1, math.floor(len(values) / reduction_factor + 1e-9))
    return sorted(ranked[:keep])


@dataclass
class HalvingRecord:
    """Every trial's values at the rungs and every decision taken, for batches of `batch`
    trials out of `total`, rungs `rungs` (epochs before the last) and `reduction_factor`."""

    batch: int
    total: int
    rungs: list[int]
    reduction_factor: float
    maximise: bool
    rung_values: dict[int, dict[int, float | None]] = field(default_factory=dict)  # n -> e -> v
    decisions: dict[tuple[int, int], list[int]] = field(default_factory=dict)  # (first, rung)
    pruned: dict[int, int] = field(default_factory=dict)  # trial number -> the rung that stopped it
    ended: set[int] = field(default_factory=set)  # trial numbers that ended (any way)
    paused: set[int] = field(default_factory=set)  # paused by the scheduler (not saved)

    def batch_of(self, number: int) -> list[int]:
        """The trial numbers of `number`'s batch."""
        first = number - number % self.batch
        return list(range(first, min(first + self.batch, self.total)))

    def at_rung(self, number: int, epoch: int, value: float | None) -> Verdict:
        """Trial `number` reached rung `epoch` with `value`: 'continue', 'stop', or 'wait' for
        the rest of its batch. A decided rung (a replayed epoch) keeps its decision."""
        first = self.batch_of(number)[0]
        if (first, epoch) not in self.decisions:
            self.rung_values.setdefault(number, {})[epoch] = value
            self.decide(first)
        kept = self.decisions.get((first, epoch))
        if kept is None:
            return "wait"
        return "continue" if number in kept else "stop"

    def decide(self, first: int) -> list[int]:
        """Decide every rung of the batch starting at `first` that now can be: when each of
        its trials still in the race has a value there (those that ended before it without
        one are left out). Returns the rungs newly decided."""
        new = []
        for rung in self.rungs:
            if (first, rung) in self.decisions:
                continue
            racing = [n for n in self.batch_of(first) if n not in self.pruned]
            at = {n: self.rung_values.get(n, {}).get(rung) for n in racing
                  if rung in self.rung_values.get(n, {})}  # fmt: skip
            if any(n not in at and n not in self.ended for n in racing) or not at:
                break
            kept = halving(at, self.reduction_factor, self.maximise)
            self.decisions[(first, rung)] = kept
            self.pruned.update({n: rung for n in at if n not in kept})
            new.append(rung)
        return new

    def standing(self, number: int) -> Standing:
        """Whether a trial that is not running may run: 'run', 'wait' (its last rung is not
        decided yet) or 'stop' (halving stopped it there)."""
        reached = self.rung_values.get(number)
        if not reached:
            return "run"
        kept = self.decisions.get((self.batch_of(number)[0], max(reached)))
        if kept is None:
            return "wait"
        return "run" if number in kept else "stop"

    def ended_trial(self, number: int) -> None:
        """Trial `number` ended (completed, stopped, errored or removed)."""
        self.ended.add(number)
        self.paused.discard(number)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON data (what is paused is not: a resumed sweep pauses again)."""
        return {
            "rung_values": {
                str(n): {str(e): v for e, v in at.items()} for n, at in self.rung_values.items()
            },
            "decisions": [
                {"first": first, "rung": rung, "kept": kept}
                for (first, rung), kept in self.decisions.items()
            ],
            "ended": sorted(self.ended),
        }

    def load_json(self, data: dict[str, Any]) -> None:
        """Replace the record, in place, with what `to_json` wrote (the trials the decisions
        left behind are derived from them)."""
        self.rung_values = {
            int(n): {int(e): None if v is None else float(v) for e, v in values.items()}
            for n, values in data.get("rung_values", {}).items()
        }
        self.decisions = {(int(d["first"]), int(d["rung"])): [int(n) for n in d["kept"]]
                          for d in data.get("decisions", [])}  # fmt: skip
        self.pruned = {
            n: rung
            for (first, rung), kept in self.decisions.items()
            for n in self.batch_of(first)
            if rung in self.rung_values.get(n, {}) and n not in kept
        }
        self.ended, self.paused = {int(n) for n in data.get("ended", [])}, set()
