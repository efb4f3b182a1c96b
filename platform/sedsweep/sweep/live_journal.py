"""The Optuna journal of a running sweep: `optuna-dashboard <sweep dir>/optuna-journal.log`
follows it while it runs.

The searcher (`OptunaPruningSearch`, in the driver) keeps its study in memory and saves it as
JSON with Tune's snapshots; that study decides everything. This module only mirrors it into
Optuna's own journal format as it happens: a trial appears (RUNNING, with its parameters and
the time it was handed to Tune) when the searcher hands it out, gets its intermediate values
as the epochs report, and is told its end (state, values, the time) when Tune completes it. The
journal is an output, never read back by the search, so a reproducible sweep is the same
sweep with or without it.

Each journal trial carries the Optuna trial number it mirrors (user attribute
`NUMBER_ATTR`): the journal numbers trials in the order they appear, which a resume or a
failed trial told again may change. At the end of an execution `record.write_record`
rewrites the journal from the searcher's saved state, in number order, keeping the times
written here (`times`).

The runner names the file for the driver's searcher while `fit()` runs (`mirrored`): a
searcher Tune unpickles on a resume knows no paths, and one used outside a sweep writes
nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

NUMBER_ATTR = "sedsweep_number"  # the Optuna trial number a journal trial mirrors

_path: Path | None = None  # the journal the driver's searcher mirrors into (see `mirrored`)


@contextlib.contextmanager
def mirrored(path: Path) -> Iterator[None]:
    """While inside, the driver's searcher mirrors its study into the journal at `path`."""
    global _path
    previous, _path = _path, path
    try:
        yield
    finally:
        _path = previous


def target() -> Path | None:
    """The journal to mirror into now (None: not inside a sweep's `fit()`)."""
    return _path


class LiveJournal:
    """Optuna's journal storage for one study, mirroring the searcher's trials by number."""

    def __init__(self, path: Path, study_name: str, directions: Sequence[str]) -> None:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        self.path = path
        _drop_broken_tail(path)
        self.storage = JournalStorage(JournalFileBackend(str(path)))
        study = optuna.create_study(
            storage=self.storage, study_name=study_name, directions=list(directions),
            load_if_exists=True,
        )  # fmt: skip
        self.study_id = study._study_id
        self.ids = {  # Optuna trial number -> this journal's trial id
            int(t.user_attrs[NUMBER_ATTR]): t._trial_id
            for t in self.storage.get_all_trials(self.study_id, deepcopy=False)
            if NUMBER_ATTR in t.user_attrs
        }

    def started(self, trial: Any) -> None:
        """A trial handed to Tune: RUNNING, with its parameters, from now."""
        from optuna.trial import FrozenTrial, TrialState

        if trial.number in self.ids:
            return
        template = FrozenTrial(
            number=0, state=TrialState.RUNNING, value=None, values=None,
            datetime_start=dt.datetime.now(), datetime_complete=None,
            params=dict(trial.params), distributions=dict(trial.distributions),
            user_attrs={NUMBER_ATTR: trial.number}, system_attrs={},
            intermediate_values={}, trial_id=0,
        )  # fmt: skip
        self.ids[trial.number] = self.storage.create_new_trial(self.study_id, template)

    def reported(self, number: int, step: int, value: float) -> None:
        if number in self.ids:
            self.storage.set_trial_intermediate_value(self.ids[number], step, value)

    def ended(self, number: int, state: Any, values: list[float] | None) -> None:
        """Its end: the state and values Optuna was told, at this time."""
        if number in self.ids:
            self.storage.set_trial_state_values(self.ids[number], state, values)

    def added(self, trial: Any) -> None:
        """A finished trial added to the study whole (a failed one that finished later)."""
        template = _with_number(trial, trial.number)
        self.ids[trial.number] = self.storage.create_new_trial(self.study_id, template)


def _drop_broken_tail(path: Path) -> None:
    """Cut a journal back to its last whole line: a driver killed while appending leaves a
    partial one, after which Optuna can read but not append."""
    if not path.is_file():
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def open_live(study_name: str, directions: Sequence[str]) -> LiveJournal | None:
    """The live journal for the current sweep (None outside one, or when it cannot be
    opened: the sweep goes on without it, with one warning)."""
    path = target()
    if path is None:
        return None
    try:
        return LiveJournal(path, study_name, directions)
    except Exception as exc:  # an output only: never the reason a sweep stops
        log.warning("the live Optuna journal %s cannot be written (%s); going on", path, exc)
        return None


def times(path: Path) -> dict[int, tuple[dt.datetime | None, dt.datetime | None]]:
    """Start and end times of the trials a live journal at `path` mirrored, by Optuna number
    (empty when there is none, or when it cannot be read: a driver killed mid-write may leave
    a broken line, and the rewrite then goes on without the times)."""
    if not path.is_file():
        return {}
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    out: dict[int, tuple[dt.datetime | None, dt.datetime | None]] = {}
    try:
        storage = JournalStorage(JournalFileBackend(str(path)))
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
            study_id = storage.get_study_id_from_name(summary.study_name)
            for t in storage.get_all_trials(study_id, deepcopy=False):
                if NUMBER_ATTR in t.user_attrs:
                    out[int(t.user_attrs[NUMBER_ATTR])] = (t.datetime_start, t.datetime_complete)
    except Exception as exc:  # an output only
        log.warning("the live Optuna journal %s cannot be read (%s); its times are lost", path, exc)
        return {}
    return out


def _with_number(trial: Any, number: int) -> Any:
    """A copy of a FrozenTrial carrying `number` as its `NUMBER_ATTR`."""
    import copy

    out = copy.deepcopy(trial)
    out.set_user_attr(NUMBER_ATTR, number)
    return out


def timed(trial: Any, when: dict[int, tuple[Any, Any]]) -> Any:
    """A FrozenTrial as the journal keeps it: its number as `NUMBER_ATTR`, and the start and
    end times the live journal saw for it (its own, from Optuna, otherwise)."""
    out = _with_number(trial, trial.number)
    start, end = when.get(trial.number, (None, None))
    if start is not None:
        out.datetime_start = start
    if end is not None and out.state.is_finished():
        out.datetime_complete = end
    return out
