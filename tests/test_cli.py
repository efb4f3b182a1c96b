"""The `sedsweep` command end to end: data make/remix/import/info, exit codes, no tracebacks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sedsweep.cli import _expand_multi_values, main
from sedsweep.data.corpus import Corpus


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console entry point in a fresh process."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    code = "from sedsweep.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_snr_takes_several_values():
    argv = ["data", "make", "remix", "--snr", "0", "-5", "10", "--out", "x"]
    assert _expand_multi_values(argv) == [
        "data", "make", "remix", "--snr", "0", "--snr", "-5", "--snr", "10", "--out", "x",
    ]  # fmt: skip


def test_make_tiny_corpora_and_refuse_overwrite(tmp_path, capsys):
    out = tmp_path / "low"
    assert (
        main(["data", "make", "lowres", "--scale", "tiny", "--clips", "12", "--out", str(out)]) == 0
    )
    corpus = Corpus.load(out)
    assert len(corpus.clips) == 12 and corpus.has_strong
    capsys.readouterr()
    assert (
        main(["data", "make", "lowres", "--scale", "tiny", "--clips", "12", "--out", str(out)]) == 2
    )
    assert "not empty" in capsys.readouterr().err
    args = ["data", "make", "lowres", "--scale", "tiny", "--clips", "10", "--out", str(out)]
    assert main([*args, "--overwrite"]) == 0
    assert len(Corpus.load(out).clips) == 10


def test_make_remix_several_snrs(tmp_path):
    out = tmp_path / "mix"
    args = ["data", "make", "remix", "--scale", "tiny", "--clips", "4", "--sr", "16000"]
    assert main([*args, "--snr", "0", "20", "--out", str(out)]) == 0
    for snr in (0, 20):
        corpus = Corpus.load(out / f"snr_{snr}db")
        assert {c.snr_db for c in corpus.clips} == {float(snr)}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["data", "make", "remix", "--snr", "0", "loud"],
            "--snr: SNR 'loud' is not a finite number",
        ),
        (["data", "make", "lowres", "--snr", "3"], "--snr: only applies to 'remix'"),
        (["data", "make", "noisy", "--noise-rate", "1.5"], "--noise-rate"),
        (["data", "make", "remix", "--noise-rate", "0.1"], "--noise-rate: only applies to 'noisy'"),
    ],
)
def test_make_rejects_bad_options_without_writing(tmp_path, args, needle):
    out = tmp_path / "never"
    proc = run_cli(*args, "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_corrupt_manifest_in_a_fresh_process(make_corpus):
    root = make_corpus()
    (root / "clips.csv").write_text("path,labels\n")
    proc = run_cli("data", "info", str(root))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("sedsweep: error: ") and "Traceback" not in proc.stderr
    assert "missing column(s): fold, verified, duration_s" in proc.stderr


def _wav(path: Path, seconds: float, sr: int = 8000, freq: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    t = np.arange(int(seconds * sr)) / sr
    y = 0.05 * rng.normal(size=t.size) if freq is None else 0.3 * np.sin(2 * np.pi * freq * t)
    sf.write(path, y.astype(np.float32), sr)


def test_import_dcase_and_remix_from_the_command_line(tmp_path):
    src = tmp_path / "dcase"
    for name in ("a.wav", "b.wav"):
        _wav(src / "audio" / name, 2.0)
    (src / "train.tsv").write_text(
        "filename\tonset\toffset\tevent_label\na.wav\t0.1\t0.9\tdog\nb.wav\t\t\t\n"
    )
    out = tmp_path / "imported"
    assert main(["data", "import", "dcase", str(src), "--out", str(out)]) == 0
    corpus = Corpus.load(out)
    assert corpus.classes == ["dog"] and [c.labels for c in corpus.clips] == [("dog",), ()]
    assert corpus.name == "imported"  # the --out folder's, not the source's
    named = tmp_path / "named"
    assert main(["data", "import", "dcase", str(src), "--out", str(named), "--name", "x"]) == 0
    assert Corpus.load(named).name == "x"
    (src / "train.tsv").write_text("filename\tonset\toffset\tevent_label\na.wav\t1.5\t2.5\tdog\n")
    past = run_cli("data", "import", "dcase", str(src), "--out", str(tmp_path / "past"))
    assert past.returncode == 0 and "warning: 1 event(s) ran past their clip's end" in past.stderr
    strict = run_cli("data", "import", "dcase", str(src), "--out", str(tmp_path / "s"), "--strict")
    assert strict.returncode == 2 and "line 2" in strict.stderr, strict.stderr
    assert len(strict.stderr.strip().splitlines()) == 1 and not (tmp_path / "s").exists()
    (src / "train.tsv").write_text("clip\tstart\nb.wav\t0\n")
    proc = run_cli("data", "import", "dcase", str(src), "--out", str(tmp_path / "never"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "train.tsv" in proc.stderr and "header not understood" in proc.stderr
    assert not (tmp_path / "never").exists()
    assert not list(out.rglob("*.wav"))  # the manifest refers to the original audio

    # `import table`: one table, the audio beside it (issue 16)
    table = src / "clips.tsv"
    table.write_text("Path\tLabels\tFold\tnote\na.wav\tdog\t2\tx\nb.wav\t\t1\ty\n")
    tabled = tmp_path / "tabled"
    assert main(["data", "import", "table", str(table), "--out", str(tabled)]) == 0
    corpus = Corpus.load(tabled)
    assert [(Path(c.path).name, c.labels, c.fold) for c in corpus.clips] == [
        ("a.wav", ("dog",), 2),
        ("b.wav", (), 1),
    ]
    missing = run_cli(
        "data", "import", "table", str(src / "nope.tsv"), "--out", str(tmp_path / "n")
    )
    assert missing.returncode == 2 and "nope.tsv" in missing.stderr, missing.stderr
    assert "metadata file not found" in missing.stderr and not (tmp_path / "n").exists()

    events, backgrounds = tmp_path / "events", tmp_path / "bg"
    for k, cls in enumerate(("bell", "horn", "bird")):
        for i in range(4):
            _wav(events / cls / f"{i}.wav", 1.0, sr=16000, freq=500.0 * (k + 1) + 40 * i)
    _wav(backgrounds / "park.wav", 12.0, sr=16000)
    mixed = tmp_path / "mixed"
    args = ["data", "remix", "--events", str(events), "--backgrounds", str(backgrounds)]
    args += [
        "--snr",
        "0",
        "10",
        "--clips",
        "4",
        "--folds",
        "2",
        "--sr",
        "16000",
        "--out",
        str(mixed),
    ]
    assert main(args) == 0
    corpus = Corpus.load(mixed / "snr_10db")
    assert len(corpus.clips) == 4 and all(len(c.labels) == 3 for c in corpus.clips)
    assert len(corpus.events) == 12


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["train", "--method", "null", "--scale", "tiny", "--workdir", "{file}"],
         "--workdir {file}: is a file, not a directory"),
        (["sweep", "search_spaces/null_load.yaml", "--scale", "tiny", "--workdir", "{tmp}/w",
          "--storage", "{file}"], "--storage {file}: is a file, not a directory"),
        (["train", "--method", "null", "--scale", "tiny", "--workdir", "/proc/sedsweep-x"],
         "--workdir /proc/sedsweep-x: cannot be created"),
    ],
)  # fmt: skip
def test_unusable_directories_are_one_line(tmp_path, capsys, monkeypatch, command, message):
    """Issue 15 F14: a work directory or --storage that is a file ended in a traceback."""
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    file = tmp_path / "a-file"
    file.write_text("not a directory")
    args = [a.format(file=file, tmp=tmp_path) for a in command]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sedsweep: error: " + message.format(file=file)) and "\n" not in err


def test_an_address_where_nothing_answers_is_one_line_before_anything_runs(tmp_path, capsys):
    """Issue 15 F10: Ray retried such an address with warnings for minutes (stopped at 427 s)."""
    root = Path(__file__).resolve().parents[1]
    args = ["sweep", str(root / "search_spaces" / "null_load.yaml"), "--scale", "tiny",
            "--workdir", str(tmp_path / "w"), "--address", "127.0.0.1:1"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sedsweep: error: --address 127.0.0.1:1: no Ray head answers there")
    assert "\n" not in err and not (tmp_path / "w" / "mlflow.db").exists()


def test_dry_run_of_a_shipped_real_audio_file_without_shared_beside_it(
    tmp_path, capsys, monkeypatch
):
    """Issue 35: `--dry-run` passed in a clone without ../shared, and the sweep then failed."""
    root = Path(__file__).resolve().parents[1]
    clone = tmp_path / "clone"
    (clone / "search_spaces").mkdir(parents=True)
    shutil.copy(root / "search_spaces" / "mtl_realaudio.yaml", clone / "search_spaces")
    monkeypatch.chdir(clone)
    assert main(["sweep", "search_spaces/mtl_realaudio.yaml", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "mtl_realaudio.yaml: data.remix.events: " in err, err
    assert (
        f"events folder not found: ../shared/realaudio/esc10 (looked in {tmp_path}/shared/" in err
    )
    assert "synthetic corpus" in err
