"""Seals over the files of a sweep's Ray directory that Ray Tune unpickles on `Tuner.restore`.

`Tuner.restore` (Ray Tune 2.60) runs `pickle.loads` on `tuner.pkl`, `cloudpickle.loads` on
the `CLOUDPICKLE_FALLBACK` fields of the newest `experiment_state-*.json`, and
`cloudpickle.load` on the newest `search_gen_state-*.json` and `callback-states-*.pkl`. On
shared storage anyone who can write to the sweep directory could plant code there that runs
as the user who resumes. So the driver seals what it wrote: an HMAC-SHA256 of each such file
(its name and bytes, bound to the experiment's directory name) under a per-user key kept
outside the storage (`key_path()`, mode 0600), in `SEAL_FILE` next to them. `resume` checks
every such file against the seal before Ray reads any of them (`verify`): a file that is not
sealed, or whose bytes changed, is refused in one line and nothing is touched.

When: Tune snapshots its experiment in `TuneController.save_to_dir`, which writes the state
into a local staging directory and then asks every callback for its state; only after that
does a background copy upload the staging files into the sweep directory. `SealCallback`
(`tracking_callback.SealCallback`) seals inside that request, before the upload, and a seal
keeps each file's last few sealed versions, so a driver killed anywhere (before, during or
after the copy) leaves files that verify. `tuner.pkl` is written once, by `tune.Tuner(...)`,
and sealed just after.

The seal names files, never absolute paths, so a copied or moved sweep still verifies; the
key is the user's, so another user (or another machine without a copy of the key) cannot
resume, by design (docs/cluster.md says how to share the key between one's own nodes).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sedsweep.errors import UserError
from sedsweep.fsio import write_json

SEAL_FILE = "sedsweep.seal"  # no .json/.pkl suffix: Ray's staging copy leaves it alone
# the names Ray Tune 2.60 unpickles from an experiment directory on restore
TUNER_FILE = "tuner.pkl"  # written by `tune.Tuner(...)`, straight into the sweep directory
RAY_PICKLED = (
    TUNER_FILE,
    "experiment_state-*.json",
    "search_gen_state-*.json",
    "callback-states-*.pkl",
)
KEY_ENV = "SEDSWEEP_SEAL_KEY"
HISTORY = 4  # sealed versions kept per file: what is on disk, and what is on its way
TRUST_OPTION = "--trust-unsealed"


def key_path() -> Path:
    """$SEDSWEEP_SEAL_KEY, else $XDG_CONFIG_HOME/sedsweep/seal.key, else
    ~/.config/sedsweep/seal.key."""
    env = os.environ.get(KEY_ENV)
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "sedsweep" / "seal.key"


def load_key(create: bool = False) -> bytes | None:
    """This user's sealing key (32 random bytes, hex in a 0600 file); made when missing and
    `create`, else None when missing. A key others can read, or that is not one, is a
    UserError naming the file."""
    path = key_path()
    if not path.exists() and create:
        _make_key(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"unreadable sealing key ({type(exc).__name__})", where=path) from None
    if mode & 0o077:
        raise UserError(
            f"sealing key readable by others (mode {mode & 0o777:04o}): chmod 600 it", where=path
        )
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise UserError("not a sealing key (expected 64 hex digits)", where=path)
    return key


def _make_key(path: Path) -> None:
    """Write a fresh key to `path` (0600, its folder 0700), never over one another process
    made meanwhile (written beside it, then linked into place)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another sweep made it first: use that one
        finally:
            tmp.unlink()
    except OSError as exc:
        raise UserError(f"cannot create the sealing key ({exc.strerror})", where=path) from None


def key_id(key: bytes) -> str:
    """A short public name of a key, for messages (never the key)."""
    return hashlib.sha256(b"sedsweep seal key id\0" + key).hexdigest()[:12]


def pickled_files(directory: Path) -> list[Path]:
    """The files in `directory` that Ray would unpickle on a restore, sorted by name."""
    found = {p for pattern in RAY_PICKLED for p in directory.glob(pattern)}
    return sorted(found)


def _mac(key: bytes, experiment: str, name: str, data: bytes) -> str:
    message = b"\0".join([b"sedsweep seal v1", experiment.encode(), name.encode(), data])
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _read_seal(experiment: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((experiment / SEAL_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _sealed_macs(seal: dict[str, Any], name: str) -> list[str]:
    files = seal.get("files")
    macs = files.get(name) if isinstance(files, dict) else None
    return [m for m in macs if isinstance(m, str)] if isinstance(macs, list) else []


def seal(experiment: Path, written: Iterable[Path]) -> None:
    """Add to `experiment`'s seal the files this driver just wrote (in `experiment`, or in
    Tune's staging copy on their way there: sealed under their names), each before the
    versions already sealed (the newest `HISTORY` kept). Never seals a file it was not given:
    one planted in the directory stays unsealed. Makes the user's key on first use."""
    key = load_key(create=True)
    assert key is not None
    old = _read_seal(experiment) or {}
    files: dict[str, list[str]] = {}
    names = old.get("files") if old.get("key") == key_id(key) else None
    if isinstance(names, dict):  # entries made with another key could not verify
        files = {name: _sealed_macs(old, name) for name in names}
    for path in written:
        with contextlib.suppress(OSError):
            mac = _mac(key, experiment.name, path.name, path.read_bytes())
            files[path.name] = [mac] + [m for m in files.get(path.name, []) if m != mac]
            files[path.name] = files[path.name][:HISTORY]
    write_json(experiment / SEAL_FILE, {"version": 1, "key": key_id(key), "files": files})


def verify(experiment: Path) -> None:
    """Every file Ray would unpickle from `experiment` must match its seal (made by this
    user's key); else a UserError naming the first that does not, before Ray reads it."""
    files = pickled_files(experiment)
    if not files:
        return
    seal_data = _read_seal(experiment)
    hint = f"(if you know this sweep's files are your own, resume with {TRUST_OPTION})"
    if seal_data is None:
        raise UserError(
            f"not sealed: no {SEAL_FILE} beside it; Ray would unpickle this file, so it is "
            f"refused {hint}",
            where=files[0],
        )
    if not seal_data or not isinstance(seal_data.get("files"), dict):
        raise UserError("unreadable seal (not the JSON object sedsweep writes)",
                        where=experiment / SEAL_FILE)  # fmt: skip
    key = load_key()
    if key is None:
        raise UserError(
            f"no sealing key here, so {SEAL_FILE} cannot be checked: copy the key of the user "
            f"who ran the sweep (key id {seal_data.get('key', '?')}) to this path, mode 0600",
            where=key_path(),
        )
    if seal_data.get("key") != key_id(key):
        raise UserError(
            f"sealed with another key (id {seal_data.get('key', '?')}; yours at {key_path()} "
            f"is {key_id(key)}): resume as the user who ran the sweep, or with their key",
            where=experiment / SEAL_FILE,
        )
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UserError(f"unreadable ({exc.strerror})", where=path) from None
        if _mac(key, experiment.name, path.name, data) not in _sealed_macs(seal_data, path.name):
            raise UserError(
                "does not match its seal (changed or added since the sweep's driver wrote "
                f"it); Ray would unpickle this file, so it is refused {hint}",
                where=path,
            )
