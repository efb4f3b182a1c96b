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
nothing. The searcher only queues its events (`mirror`); a thread of the driver writes them.
Optuna's file backend fsyncs every append, three or more per trial (about 13 ms a trial in a
profile of a 200-trial sweep), and on Tune's controller thread that wait delayed every trial
start and result behind it. Leaving `mirrored` waits for what is queued, so the journal is
whole when the record is written; a trial's end is stamped when the thread writes it, a few
milliseconds after Optuna was told (its start is stamped when it is handed out).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

NUMBER_ATTR = "sedsweep_number"  # the Optuna trial number a journal trial mirrors

_writer: _Writer | None = None  # the driver's writer while inside `mirrored`


@contextlib.contextmanager
def mirrored(path: Path) -> Iterator[None]:
    """While inside, the driver's searcher mirrors its study into the journal at `path` (a
    writer thread of its own); leaving waits until every queued event is written."""
    global _writer
    previous, _writer = _writer, _Writer(path)
    try:
        yield
    finally:
        writer, _writer = _writer, previous
        writer.close()


def mirror(study_name: str, directions: Sequence[str], event: str, *args: Any) -> None:
    """Queue `event` (a `LiveJournal` method) with `args` for the study's live journal; a
    searcher outside a sweep's `fit()` has none, and nothing happens."""
    if _writer is not None:
        _writer.queue.put((study_name, tuple(directions), event, args))


def flush() -> None:
    """Wait until the events queued so far are written (what optuna-dashboard reads next)."""
    if _writer is not None:
        _writer.queue.join()


class _Writer(threading.Thread):
    """Applies queued events to the live journal of each study, in order, until closed; a
    journal that cannot be opened or written is warned about and the sweep goes on."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="sedsweep-live-journal", daemon=True)
        self.path = path
        self.queue: queue.Queue[tuple[str, tuple[str, ...], str, tuple[Any, ...]] | None]
        self.queue = queue.Queue()
        self.journals: dict[str, LiveJournal | None] = {}
        self.start()

    def run(self) -> None:
        while (item := self.queue.get()) is not None:
            try:
                self._apply(*item)
            finally:
                self.queue.task_done()
        self.queue.task_done()

    def _apply(self, study: str, directions: tuple[str, ...], event: str, args: tuple) -> None:
        if study not in self.journals:
            self.journals[study] = open_live(self.path, study, directions)
        journal = self.journals[study]
        if journal is None:
            return
        try:
            getattr(journal, event)(*args)
        except Exception as exc:  # an output only
            log.warning("the live Optuna journal %s missed an event (%s)", self.path, exc)

    def close(self) -> None:
        self.queue.put(None)
        self.join()


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

    def started(self, number: int, params: dict[str, Any], distributions: dict[str, Any],
                when: dt.datetime) -> None:  # fmt: skip
        """A trial handed to Tune at `when`: RUNNING, with its parameters."""
        from optuna.trial import FrozenTrial, TrialState

        if number in self.ids:
            return
        template = FrozenTrial(
            number=0, state=TrialState.RUNNING, value=None, values=None,
            datetime_start=when, datetime_complete=None, params=params,
            distributions=distributions, user_attrs={NUMBER_ATTR: number}, system_attrs={},
            intermediate_values={}, trial_id=0,
        )  # fmt: skip
        self.ids[number] = self.storage.create_new_trial(self.study_id, template)

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


def open_live(path: Path, study_name: str, directions: Sequence[str]) -> LiveJournal | None:
    """The live journal at `path` for a study (None when it cannot be opened: the sweep goes
    on without it, with one warning)."""
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
