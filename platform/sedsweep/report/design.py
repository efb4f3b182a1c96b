"""Design checks before effects are estimated: which keys are constant, which are confounded.

An effect can only be credited to a key whose values vary independently of the others in the
trials at hand. For the discrete keys (grid values, explicit cells, categorical choices) two
keys are *fully crossed* when every combination of their observed values occurs; when not,
they are confounded in this design — aliased (each value of one goes with exactly one of the
other), one determined by the other, one nested in a single level of the other (`mtl.alpha`
varies only where `pooling = two_step`), or just incompletely crossed. Confounded keys are
reported as one factor (connected groups of pairwise-confounded keys), never as separate
effects. Continuous searched parameters are drawn by the sampler independently of the other
keys and are left as their own factors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sedsweep.report.runs import TrialRun


def hashable(value: Any) -> Any:
    """A config value usable as a dict key (lists and mappings as their text)."""
    return str(value) if isinstance(value, list | dict) else value


@dataclass(frozen=True)
class Factor:
    """One key, or a group of confounded keys that the design cannot tell apart."""

    keys: tuple[str, ...]

    @property
    def name(self) -> str:
        """`pooling` or `pooling+mtl.alpha`."""
        return "+".join(self.keys)

    def level(self, trial: TrialRun) -> Any:
        """The trial's value of this factor (a tuple's text for a group)."""
        if len(self.keys) == 1:
            return hashable(trial.value(self.keys[0]))
        return ", ".join(f"{k}={trial.value(k)}" for k in self.keys)


@dataclass
class Design:
    """The factors of a set of trials, the constant keys and why keys were grouped."""

    factors: list[Factor] = field(default_factory=list)
    constant: list[str] = field(default_factory=list)
    confounded: list[str] = field(default_factory=list)

    @property
    def varying(self) -> list[str]:
        """Every key that varies."""
        return [k for f in self.factors for k in f.keys]

    def warnings(self) -> list[str]:
        """One line per confounded pair."""
        return [f"confounded: {c}" for c in self.confounded]


def _relation(a: str, b: str, pairs: set[tuple[Any, Any]]) -> str | None:
    """How keys a and b are confounded given their observed value pairs; None: fully crossed."""
    a_levels = {x for x, _ in pairs}
    b_levels = {y for _, y in pairs}
    if len(pairs) == len(a_levels) * len(b_levels):
        return None
    if len(pairs) == len(a_levels) == len(b_levels):
        return f"{a} and {b} are aliased (each value of one goes with one value of the other)"
    if len(pairs) == len(a_levels):
        return f"{b} is determined by {a}"
    if len(pairs) == len(b_levels):
        return f"{a} is determined by {b}"
    for inner, outer, flip in ((a, b, False), (b, a, True)):
        by_outer: dict[Any, set[Any]] = {}
        for x, y in pairs:
            o, i = (x, y) if flip else (y, x)
            by_outer.setdefault(o, set()).add(i)
        varies = [o for o, inners in by_outer.items() if len(inners) > 1]
        if len(varies) == 1:
            return f"{inner} varies only where {outer} = {varies[0]}"
    total = len(a_levels) * len(b_levels)
    return f"{a} and {b} are not fully crossed ({len(pairs)} of {total} combinations occur)"


def check_design(
    trials: Sequence[TrialRun], keys: Sequence[str], continuous: Sequence[str] = ()
) -> Design:
    """Constant keys, confounded groups and the resulting factors of `keys` over `trials`."""
    design = Design()
    levels = {k: [hashable(t.value(k)) for t in trials] for k in keys}
    varying = [k for k in keys if len(set(levels[k])) > 1]
    design.constant = [k for k in keys if k not in varying]
    discrete = [k for k in varying if k not in continuous]
    group = {k: k for k in varying}

    def root(k: str) -> str:
        while group[k] != k:
            k = group[k]
        return k

    for i, a in enumerate(discrete):
        for b in discrete[i + 1 :]:
            reason = _relation(a, b, set(zip(levels[a], levels[b], strict=True)))
            if reason is not None:
                design.confounded.append(reason)
                group[root(b)] = root(a)
    members: dict[str, list[str]] = {}
    for k in varying:
        members.setdefault(root(k), []).append(k)
    design.factors = [Factor(tuple(ks)) for ks in members.values()]
    return design
