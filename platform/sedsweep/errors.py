"""Errors a user can cause: reported as one line and exit code 2, never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class UserError(Exception):
    """Bad input from the user (file, field, value); the CLI prints it on one line and exits 2."""

    def __init__(self, message: str, *, where: str | Path | None = None) -> None:
        self.where = str(where) if where is not None else None
        self.message = " ".join(message.split())
        text = f"{self.where}: {message}" if self.where else message
        super().__init__(" ".join(text.split()))


def unknown_name(
    kind: str,
    name: object,
    known: Iterable[str],
    notes: dict[str, str] | None = None,
    prefix: str = "",
) -> str:
    """The message for a name that is not one of `known`: "unknown method 'whenwo' (did you
    mean 'whenwho'? known: a, b, c)". The suggestion is the closest known name by difflib's
    ratio (at least 0.6), if any; `notes` annotate some known names in the list. With a
    `prefix` (a dotted key's parent, "budget."), `known` are the names under it and `name`
    is matched without it."""
    names = list(known)
    hint = did_you_mean(str(name), names, prefix)
    under = f" under {prefix[:-1]!r}" if prefix else ""
    return f"unknown {kind} {str(name)!r} ({hint}known{under}: {listed(names, notes)})"


def did_you_mean(name: str, known: Iterable[str], prefix: str = "") -> str:
    """ "did you mean 'x'? " for the known name closest to `name` (difflib's ratio at least
    0.6; with a `prefix`, `name` is matched without it and the answer given with it), else ""."""
    close = difflib.get_close_matches(name.removeprefix(prefix), list(known), n=1)
    return f"did you mean {prefix + close[0]!r}? " if close else ""


def listed(names: Iterable[str], notes: dict[str, str] | None = None) -> str:
    """Names joined by commas, each followed by its note in parentheses where it has one."""
    return ", ".join(f"{n} ({notes[n]})" if notes and n in notes else n for n in names)
