"""Errors a user can cause: reported as one line and exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Bad input from the user (file, field, value); the CLI prints it on one line and exits 2."""

    def __init__(self, message: str, *, where: str | Path | None = None) -> None:
        self.where = str(where) if where is not None else None
        self.message = " ".join(message.split())
        text = f"{self.where}: {message}" if self.where else message
        super().__init__(" ".join(text.split()))
