"""Sealed Ray state (`sweep.seal`): `resume` lets Ray unpickle only what this user's driver
wrote. Unit cases on hand-made directories; the sweep cases plant real pickles (each would
create a marker file when unpickled) into a copy of the session's quickstart sweep."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickle
import re
import shutil
import stat
from pathlib import Path

import pytest

from sedsweep.errors import UserError
from sedsweep.sweep import seal as sealing
from sedsweep.sweep.seal import SEAL_FILE, TRUST_OPTION, pickled_files, seal, verify
from tests.test_cli import run_cli


@pytest.fixture
def key(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "config" / "sedsweep" / "seal.key"
    monkeypatch.setenv(sealing.KEY_ENV, str(path))
    return path


def experiment_dir(tmp_path: Path) -> Path:
    exp = tmp_path / "sweep-20260101-000000-abcdef"
    exp.mkdir()
    (exp / "tuner.pkl").write_bytes(pickle.dumps({"tuner": 1}))
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": []}')
    (exp / "search_gen_state-2026-01-01_00-00-00.json").write_bytes(pickle.dumps({"s": 1}))
    (exp / "searcher-state-2026-01-01_00-00-00.pkl").write_text("{}")  # sedsweep's, JSON
    return exp


def test_the_key_is_made_once_private_and_its_mac_is_hmac_sha256(key, tmp_path):
    exp = experiment_dir(tmp_path)
    seal(exp, pickled_files(exp))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    raw = bytes.fromhex(key.read_text().strip())
    assert len(raw) == 32
    seal(exp, pickled_files(exp))
    assert bytes.fromhex(key.read_text().strip()) == raw  # kept, not remade
    recorded = json.loads((exp / SEAL_FILE).read_text())
    # the files Ray unpickles, and only those (sedsweep's own searcher state is JSON)
    assert sorted(recorded["files"]) == sorted(p.name for p in pickled_files(exp))
    assert "searcher-state-2026-01-01_00-00-00.pkl" not in recorded["files"]
    data = (exp / "tuner.pkl").read_bytes()
    message = b"\0".join([b"sedsweep seal v1", exp.name.encode(), b"tuner.pkl", data])
    assert recorded["files"]["tuner.pkl"] == [hmac.new(raw, message, hashlib.sha256).hexdigest()]
    assert recorded["key"] == sealing.key_id(raw) and key.read_text().strip() not in json.dumps(
        recorded
    )


def test_verify_accepts_what_was_sealed_and_names_what_was_not(key, tmp_path):
    exp = experiment_dir(tmp_path)
    seal(exp, pickled_files(exp))
    verify(exp)
    # a planted newer snapshot (Ray restores the newest by name)
    planted = exp / "experiment_state-2099-01-01_00-00-00.json"
    planted.write_text('{"trial_data": []}')
    with pytest.raises(UserError, match=rf"^{planted}: does not match its seal.*{TRUST_OPTION}"):
        verify(exp)
    planted.unlink()
    # a planted callback-state pickle, a file Ray loads that the driver never wrote
    (exp / "callback-states-2099.pkl").write_bytes(pickle.dumps({0: {}}))
    with pytest.raises(UserError, match=re.escape("callback-states-2099.pkl: does not match")):
        verify(exp)
    (exp / "callback-states-2099.pkl").unlink()
    # a changed byte
    tuner = exp / "tuner.pkl"
    data = tuner.read_bytes()
    tuner.write_bytes(data[:5] + bytes([data[5] ^ 1]) + data[6:])
    with pytest.raises(UserError, match=re.escape("tuner.pkl: does not match its seal")):
        verify(exp)


def test_seal_adds_only_the_files_it_is_given(key, tmp_path):
    """A file planted while the sweep runs is not swept into the next seal."""
    exp = experiment_dir(tmp_path)
    seal(exp, [exp / "tuner.pkl"])
    with pytest.raises(
        UserError, match=re.escape("experiment_state-2026-01-01_00-00-00.json: does not")
    ):
        verify(exp)


def test_versions_on_their_way_verify_and_old_ones_age_out(key, tmp_path):
    """Tune seals a snapshot in staging before the upload: a driver killed before or after
    the copy leaves a sealed version on disk; the newest HISTORY versions are kept."""
    exp = experiment_dir(tmp_path)
    state = exp / "experiment_state-2026-01-01_00-00-00.json"
    staging = tmp_path / "staging"
    staging.mkdir()
    seal(exp, pickled_files(exp))
    versions = [state.read_bytes()]
    for i in range(sealing.HISTORY + 1):
        staged = staging / state.name
        staged.write_text(json.dumps({"trial_data": [], "n": i}))
        seal(exp, [staged])
        verify(exp)  # sealed, not uploaded yet: the version on disk still verifies
        shutil.copy(staged, state)  # Tune's upload
        verify(exp)
        versions.append(staged.read_bytes())
    for version in versions[-sealing.HISTORY :]:
        state.write_bytes(version)
        verify(exp)
    for version in versions[: -sealing.HISTORY]:  # aged out
        state.write_bytes(version)
        with pytest.raises(UserError, match="does not match its seal"):
            verify(exp)


def test_unsealed_other_key_unreadable_seal_and_a_readable_key_are_refused(
    key, tmp_path, monkeypatch
):
    exp = experiment_dir(tmp_path)
    with pytest.raises(
        UserError, match=rf"^{exp / 'experiment_state'}.*not sealed.*{TRUST_OPTION}"
    ):
        verify(exp)
    seal(exp, pickled_files(exp))
    other = tmp_path / "other.key"
    other.write_text(os.urandom(32).hex())
    other.chmod(0o600)
    monkeypatch.setenv(sealing.KEY_ENV, str(other))
    with pytest.raises(UserError, match=rf"^{exp / SEAL_FILE}: sealed with another key"):
        verify(exp)
    monkeypatch.setenv(sealing.KEY_ENV, str(tmp_path / "missing.key"))
    with pytest.raises(UserError, match=re.escape("missing.key: no sealing key here")):
        verify(exp)
    monkeypatch.setenv(sealing.KEY_ENV, str(key))
    key.chmod(0o644)
    with pytest.raises(UserError, match=r"seal.key: sealing key readable by others \(mode 0644\)"):
        verify(exp)
    key.chmod(0o600)
    (exp / SEAL_FILE).write_text("[1, 2")
    with pytest.raises(UserError, match=rf"^{exp / SEAL_FILE}: unreadable seal"):
        verify(exp)
    key.write_text("not hex")
    with pytest.raises(UserError, match="not a sealing key"):
        seal(exp, pickled_files(exp))


class _Exploit:
    """Unpickling this creates `marker` (what a planted pickle could do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def payload(marker: Path) -> bytes:
    data = pickle.dumps(_Exploit(marker))
    assert b"_Exploit" not in data  # the payload needs nothing from this test to run
    return data


def test_the_payload_would_run(tmp_path):
    marker = tmp_path / "ran"
    pickle.loads(payload(marker))
    assert marker.exists()


def fingerprint(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }  # fmt: skip


def planted(experiment: Path, marker: Path) -> dict[str, callable]:
    """One way to plant the payload in each file Ray would unpickle."""
    from ray._common.utils import binary_to_hex

    def into_state(path: Path) -> None:
        state = json.loads(path.read_text())
        fallback = {"_type": "CLOUDPICKLE_FALLBACK", "value": binary_to_hex(payload(marker))}
        state["runner_data"] = {"planted": fallback}
        path.write_text(json.dumps(state))

    newest = sorted(experiment.glob("experiment_state-*.json"))[-1]
    return {
        "tuner.pkl": lambda: (experiment / "tuner.pkl").write_bytes(payload(marker)),
        "experiment state": lambda: into_state(newest),
        "newer experiment state": lambda: (
            shutil.copy(newest, experiment / "experiment_state-2099-12-31_23-59-59.json"),
            into_state(experiment / "experiment_state-2099-12-31_23-59-59.json"),
        ),
        "searcher wrapper state": lambda: next(
            experiment.glob("search_gen_state-*.json")
        ).write_bytes(payload(marker)),
        "callback state": lambda: (experiment / "callback-states-2099.pkl").write_bytes(
            payload(marker)
        ),
    }


def test_a_planted_pickle_in_any_ray_file_is_refused_before_ray_reads_it(
    quickstart_sweep, tmp_path
):
    """Issue 32: `Tuner.restore` unpickles tuner.pkl, the experiment state's cloudpickle
    fields, the searcher wrapper's and the callbacks' state. Each planted payload is refused
    in one line naming its file; the marker never appears and no file changes."""
    from sedsweep.sweep.runner import resume_sweep

    source = Path(quickstart_sweep[2].path)
    assert (source / SEAL_FILE).is_file() and pickled_files(source)
    marker = tmp_path / "ran"
    for what in planted(source, marker):
        work = tmp_path / what.replace(" ", "-")
        experiment = work / source.name
        shutil.copytree(source, experiment)
        planted(experiment, marker)[what]()
        before = fingerprint(work)
        with pytest.raises(UserError, match=rf"^{experiment}/\S+: does not match its seal"):
            resume_sweep(experiment, notify=lambda line: None)
        assert not marker.exists(), what
        assert fingerprint(work) == before, what
    # the command line: one line, exit 2
    done = run_cli("resume", str(experiment))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "does not match its seal" in done.stderr
    assert not marker.exists()


def test_trust_unsealed_seals_what_is_there_and_says_so(quickstart_sweep, tmp_path):
    """A sweep from before sealing (no seal) is refused; with `--trust-unsealed` its files
    are sealed as they are and the resume goes on (here to the next check, which stops it:
    an experiment state made unreadable for the purpose, so no Ray is needed)."""
    from sedsweep.sweep.runner import resume_sweep

    source = Path(quickstart_sweep[2].path)
    experiment = tmp_path / source.name
    shutil.copytree(source, experiment)
    (experiment / SEAL_FILE).unlink()
    newest = sorted(experiment.glob("experiment_state-*.json"))[-1]
    newest.write_text("{not json")
    with pytest.raises(UserError, match=rf"^{experiment}/\S+: not sealed: no {SEAL_FILE}"):
        resume_sweep(experiment, notify=lambda line: None)
    assert not (experiment / SEAL_FILE).exists()
    said: list[str] = []
    with pytest.raises(UserError, match=rf"^{newest}: unreadable Ray Tune experiment state"):
        resume_sweep(experiment, notify=said.append, trust_unsealed=True)
    assert said == [f"note: {TRUST_OPTION}: the Ray state in {experiment} is sealed as it is now"]
    verify(experiment)
