"""Atomic file-system writes: everything is written to a temporary path, then renamed."""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sedsweep.errors import UserError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _plain_mode(path: Path, base: int) -> None:
    """Give a temp file (0600) or temp dir (0700) the mode a plain open()/mkdir() would."""
    os.chmod(path, base & ~_umask())


def _tmp_prefix(path: Path) -> str:
    """Temporary siblings of `path` are named `.NAME.PID-XXXX.tmp` (the writer's PID)."""
    return f".{path.name}.{os.getpid()}-"


def _clear_stale(path: Path) -> None:
    """Remove temporary siblings of `path` that a killed writer left (its PID is gone): a
    SIGKILL skips the clean-up of an atomic write, and the next writer of `path` does it."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*-*.tmp"):
        pid = tmp.name[len(path.name) + 2 :].split("-", 1)[0]
        if not pid.isdigit() or _pid_alive(int(pid)):
            continue
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def temp_dir_for(dest: Path) -> Path:
    """A new temporary directory beside `dest`, to be renamed to it (stale ones of killed
    writers are cleared first)."""
    with _cannot_write(dest):
        _clear_stale(dest)
        return Path(tempfile.mkdtemp(prefix=_tmp_prefix(dest), suffix=".tmp", dir=dest.parent))


@contextlib.contextmanager
def _cannot_write(dest: Path) -> Iterator[None]:
    """A place where nothing can be created (`/proc/x`, a read-only mount, no permission) is
    a one-line error naming it."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(f"cannot write there ({reason})", where=dest) from None


FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full(exc: BaseException | None) -> OSError | None:
    """The "no space left" (or quota) error in `exc` or in what it was raised from or while
    handling (a Tune error wraps the callback's), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in FULL:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def no_space(path: str | Path | None, then: str = "") -> UserError:
    """A one-line error for a full file system at `path`: how much is free there now, and
    `then` (what to do after freeing some, e.g. the resume command)."""
    where = Path(path) if path else Path.cwd()
    probe = next((p for p in (where, *where.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free
    amount = f"{free / 2**20:.1f} MB" if free >= 2**20 else f"{free / 2**10:.0f} KB"
    after = f"; free some space, then {then}" if then else ""
    return UserError(f"no space left on the device ({amount} free there){after}", where=where)


def unusable(path: str | Path, what: str, directory: bool = False) -> str:
    """Why `path` cannot be read as `what` (e.g. "corpus directory"), for a one-line error:
    not found, a symbolic link loop, permission denied, or the wrong kind of file."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            dangling = os.path.islink(path)
            return f"{what} not found" + (" (a symbolic link to nothing)" if dangling else "")
        if exc.errno == errno.ELOOP:
            return f"{what}: a loop of symbolic links"
        return f"{what}: {(exc.strerror or str(exc)).lower()}"
    if directory and not stat.S_ISDIR(mode):
        return f"{what}: not a directory"
    if not directory and stat.S_ISDIR(mode):
        return f"{what}: is a directory"
    return f"{what}: not a regular file"


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary sibling of `path` for writing; rename it over `path` only on success."""
    path = Path(path)
    with _cannot_write(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        _clear_stale(path)
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _plain_mode(Path(tmp), 0o666)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if disk_full(exc):
            raise no_space(path) from None
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented JSON atomically."""
    with atomic_file(path, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2, sort_keys=False)
        handle.write("\n")


def write_yaml(path: str | Path, data: Any, header: str | None = None) -> None:
    """Write `data` as YAML atomically (keys in their order), after `header` as # comments."""
    import yaml

    with atomic_file(path, "w", encoding="utf-8") as handle:
        if header:
            handle.write("".join(f"# {line}\n" for line in header.splitlines()))
        yaml.safe_dump(data, handle, sort_keys=False)


def writable_dir(path: str | Path, option: str) -> Path:
    """`path` as a directory this process can write into (created if missing); a regular
    file, a path that cannot be created or a read-only directory is a one-line UserError
    naming the option and the path."""
    path = Path(path).resolve()
    where = f"{option} {path}"
    if path.exists() and not path.is_dir():
        raise UserError("is a file, not a directory", where=where)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot be created ({exc.strerror or exc})", where=where) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError("is not writable", where=where)
    return path


def check_output_dir(dest: str | Path, overwrite: bool) -> Path:
    """Refuse a non-empty existing output directory unless `overwrite` is set."""
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise UserError("output path exists and is not a directory", where=dest)
    if dest.is_dir() and any(dest.iterdir()) and not overwrite:
        raise UserError(
            "output directory is not empty (pass --overwrite to replace it)", where=dest
        )
    return dest


@contextlib.contextmanager
def atomic_dir(dest: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it to `dest` only on success."""
    dest = check_output_dir(dest, overwrite).absolute()
    with _cannot_write(dest):
        dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir_for(dest)
    try:
        yield tmp
        _plain_mode(tmp, 0o777)
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.rmdir(old)
            os.rename(dest, old)
        os.rename(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if disk_full(exc):  # also one `atomic_file` turned into a UserError (its context)
            raise no_space(dest) from None  # the destination, not a file in its temporary
        raise
