"""Train / validation / test splits from a corpus's folds (a method's `split` config)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field, model_validator

from sedsweep.config import Strict


class SplitConfig(Strict):
    """Which folds train, select (validation) and test; validation may be carved from train.

    A fold is a corpus fold number, or counted from the corpus's highest fold when negative:
    -1 is the highest, -2 the one below (as Python indexes a list). The defaults are relative,
    so every fold of a corpus is used whatever their number: test on the last, train on all
    the others."""

    train_folds: list[int] | None = Field(default=None, description="None: all but val/test")
    val_folds: list[int] | None = Field(default=None, description="None: carve val_fraction")
    test_folds: list[int] | None = Field(
        default=None, description="None: the highest fold; -1 the highest, -2 the one below"
    )
    val_fraction: float = Field(default=0.15, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _disjoint(self) -> SplitConfig:
        named = [set(f) for f in (self.train_folds, self.val_folds, self.test_folds) if f]
        if sum(len(s) for s in named) != len(set().union(*named)):
            raise ValueError("train_folds, val_folds and test_folds must not share a fold")
        return self


@dataclass(frozen=True)
class Splits:
    """Clip indices of the train, validation and test sets (disjoint)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    unused_folds: tuple[int, ...] = ()  # corpus folds no split draws from

    def unused_note(self) -> str | None:
        """A warning when the split leaves folds of the corpus unused, else None."""
        if not self.unused_folds:
            return None
        return f"the split leaves fold(s) {list(self.unused_folds)} of the corpus unused"

    def notes(self, weak: np.ndarray, classes: list[str]) -> list[str]:
        """Warnings before anything is trained (`weak`: the clips' weak labels, one column
        per class): folds left unused; no test clips (no test/* metrics); classes no training
        clip carries (they cannot be learned, and their test scores are noise)."""
        out = [note] if (note := self.unused_note()) else []
        if not len(self.test):
            out.append("the split has no test clips: the run reports no test/* metrics")
        if len(self.train) and weak.size:
            unseen = [
                c for c, n in zip(classes, weak[self.train].sum(axis=0), strict=True) if not n
            ]
            if unseen:
                shown = ", ".join(unseen[:8]) + (
                    f" and {len(unseen) - 8} more" if len(unseen) > 8 else ""
                )
                out.append(
                    f"{len(unseen)} class(es) have no clip in the training split ({shown}): "
                    "they cannot be learned"
                )
        return out

    def __getitem__(self, name: str) -> np.ndarray:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def resolve_splits(clip_folds: np.ndarray, cfg: SplitConfig, seed: int) -> Splits:
    """Turn a SplitConfig into indices of the clips (`clip_folds`: each clip's fold); the test
    fold never feeds training or selection. Relative folds (negative: -1 the highest) are
    resolved against the corpus's folds."""
    folds = sorted(set(np.asarray(clip_folds).tolist()))

    def indices(named: list[int]) -> np.ndarray:
        return np.flatnonzero(np.isin(clip_folds, np.asarray(named, dtype=np.int64)))

    def absolute(named: list[int]) -> list[int]:
        out = []
        for f in named:
            if f < 0 and -f > len(folds):
                raise ValueError(f"split names fold {f} but the corpus has {len(folds)} fold(s)")
            out.append(folds[f] if f < 0 else f)
        return out

    test = absolute(cfg.test_folds) if cfg.test_folds is not None else folds[-1:]
    val = absolute(cfg.val_folds or [])
    train = (
        absolute(cfg.train_folds)
        if cfg.train_folds is not None
        else [f for f in folds if f not in test and f not in val]
    )
    unknown = sorted(set(train + val + test) - set(folds))
    if unknown:
        raise ValueError(f"split names fold(s) {unknown} that the corpus lacks (folds: {folds})")
    shared = (set(train) & set(val)) | (set(train) & set(test)) | (set(val) & set(test))
    if shared:
        raise ValueError(f"fold(s) {sorted(shared)} fall in two splits (folds: {folds})")
    train_idx = indices(train)
    if cfg.val_folds:
        val_idx = indices(val)
    else:
        rng = np.random.default_rng(seed)
        shuffled = rng.permutation(train_idx)
        n_val = round(len(shuffled) * cfg.val_fraction)
        val_idx, train_idx = np.sort(shuffled[:n_val]), np.sort(shuffled[n_val:])
    if len(train_idx) == 0:
        raise ValueError("the training split is empty")
    unused = tuple(f for f in folds if f not in {*train, *val, *test})
    return Splits(train=train_idx, val=val_idx, test=indices(test), unused_folds=unused)
