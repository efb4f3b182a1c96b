"""Splits from folds (issue 16): relative fold numbers, defaults that use every fold, and a
warning for the folds a split leaves out."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from sedsweep.cli import main
from sedsweep.methods.base import SplitConfig, resolve_splits
from sedsweep.methods.mtl_attention import MtlAttentionConfig
from sedsweep.methods.staged import StagedConfig
from sedsweep.methods.whenwho import WhenWhoConfig
from tests.test_whenwho import make_features


def five_folds():
    """25 clips, fold of clip i = i % 5 + 1."""
    fs = make_features(n=25)
    fs.folds = np.arange(len(fs)) % 5 + 1
    return fs


def clips_in(fs, folds) -> list[int]:
    return [i for i in range(len(fs)) if fs.folds[i] in folds]


def test_mtl_attention_default_uses_every_fold_last_test_one_before_validation():
    """Issue 16: on a 5-fold corpus the default trained on 1–2, validated on 3, tested on 4
    and never touched fold 5."""
    fs = five_folds()
    s = resolve_splits(fs.folds, MtlAttentionConfig().split, seed=0)
    assert s.test.tolist() == clips_in(fs, {5})
    assert s.val.tolist() == clips_in(fs, {4})
    assert s.train.tolist() == clips_in(fs, {1, 2, 3})
    assert s.unused_folds == () and s.unused_note() is None


@pytest.mark.parametrize("config", [WhenWhoConfig, StagedConfig], ids=["whenwho", "staged"])
def test_whenwho_and_staged_defaults_train_on_all_but_the_last_fold(config):
    """Issue 16: `staged` trained on fold 1, tested on fold 2 and dropped folds 3–5."""
    fs = five_folds()
    s = resolve_splits(fs.folds, config().split, seed=0)
    assert s.test.tolist() == clips_in(fs, {5})
    assert sorted(s.train.tolist() + s.val.tolist()) == clips_in(fs, {1, 2, 3, 4})
    assert len(s.val) == round(0.15 * 20) and s.unused_folds == ()


def test_on_the_two_fold_corpora_the_defaults_are_the_papers_splits():
    fs = make_features(n=24)  # folds 1 and 2, like NIPS4B's 513/174 and FSDKaggle2019's
    s = resolve_splits(fs.folds, WhenWhoConfig().split, seed=0)
    assert s.test.tolist() == clips_in(fs, {2})
    assert sorted(s.train.tolist() + s.val.tolist()) == clips_in(fs, {1})


def test_a_split_that_leaves_folds_unused_says_which():
    fs = five_folds()
    s = resolve_splits(fs.folds, SplitConfig(train_folds=[1], test_folds=[-1]), seed=0)
    assert s.unused_folds == (2, 3, 4)
    assert s.unused_note() == "the split leaves fold(s) [2, 3, 4] of the corpus unused"


def test_split_notes_name_an_empty_test_split_and_classes_training_never_sees():
    """Issue 16: the plan warns about classes missing from the training folds and a split
    with no test clips (checked against the labels by hand)."""
    fs = five_folds()
    weak = np.zeros((25, 3), dtype=np.float32)
    weak[:, 0] = 1  # class a everywhere
    weak[np.flatnonzero(fs.folds == 5), 1] = 1  # class b only in the test fold
    weak[np.flatnonzero(fs.folds == 2), 2] = 1  # class c in a training fold
    s = resolve_splits(fs.folds, SplitConfig(test_folds=[-1], val_fraction=0.0), seed=0)
    assert s.notes(weak, ["a", "b", "c"]) == [
        "1 class(es) have no clip in the training split (b): they cannot be learned"
    ]
    no_test = resolve_splits(fs.folds, SplitConfig(train_folds=[1, 2, 3, 4, 5], test_folds=[]), 0)
    notes = no_test.notes(weak, ["a", "b", "c"])
    assert notes == ["the split has no test clips: the run reports no test/* metrics"]
    full = resolve_splits(fs.folds, SplitConfig(), seed=0)
    assert full.notes(np.ones((25, 3)), ["a", "b", "c"]) == []


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"test_folds": [-6]}, "split names fold -6 but the corpus has 5 fold(s)"),
        ({"train_folds": [5], "test_folds": [-1]}, "fold(s) [5] fall in two splits"),
        ({"val_folds": [-1], "test_folds": [5]}, "fold(s) [5] fall in two splits"),
        ({"test_folds": [9]}, "split names fold(s) [9] that the corpus lacks"),
    ],
)
def test_relative_folds_that_do_not_resolve_are_refused(split, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_splits(five_folds().folds, SplitConfig(**split), seed=0)


def test_train_warns_about_unused_folds(tmp_path, make_corpus, capsys):
    corpus = make_corpus("threefold")
    clips = corpus / "clips.csv"
    rows = clips.read_text().splitlines()
    rows[1] = rows[1].replace(",1,", ",3,", 1)  # the first clip moves to a third fold
    clips.write_text("\n".join(rows) + "\n")
    args = ["train", "--method", "null", "--scale", "tiny", "--data", str(corpus)]
    args += ["--workdir", str(tmp_path / "w"), "--set", "split.train_folds=[1]"]
    args += ["--set", "split.test_folds=[2]"]
    assert main(args) == 0
    assert "warning: the split leaves fold(s) [3] of the corpus unused" in capsys.readouterr().err


# -- plans that show the data, and refuse what the method cannot split, before any compute -----
ROOT = Path(__file__).resolve().parents[1]


def sweep_file(tmp_path: Path, corpus: Path, method_file: str) -> Path:
    spec = yaml.safe_load((ROOT / "search_spaces" / method_file).read_text())
    spec["data"] = {"path": str(corpus)}
    path = tmp_path / f"on-{corpus.name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_dry_run_prints_the_corpus_its_splits_the_features_and_the_scale(
    tmp_path, make_corpus, capsys
):
    """Issue 16: `--dry-run` printed neither the data source nor the feature parameters, and
    what `--scale` changed showed only in run.yaml after training."""
    corpus = make_corpus("hand", n=20)
    path = sweep_file(tmp_path, corpus, "null_load.yaml")
    assert main(["sweep", str(path), "--scale", "tiny", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"data: {corpus.resolve()}: corpus 'hand' (fingerprint " in out
    assert "20 clips in folds [1, 2], 2 classes" in out
    assert "clips per split: train 8, val 2, test 10" in out  # 15 % of fold 1 validates
    assert "features: sr " in out and "n_mels " in out and "hop_length " in out
    assert "scale 'tiny' sets: config {" in out
    assert "audio samples: 1.2 MB read: all finite" in out


def test_dry_run_finds_non_finite_audio_in_one_line(tmp_path, make_corpus, capsys, monkeypatch):
    """Issue 32: a WAV of NaN passed `--dry-run`. A small corpus's samples are read there;
    a large one's are said to be checked when features are extracted."""
    import soundfile as sf

    from sedsweep import runspec

    corpus = make_corpus("hand", n=20)
    path = sweep_file(tmp_path, corpus, "null_load.yaml")
    wav = corpus / "audio" / "c5.wav"
    y, sr = sf.read(wav, dtype="float32")
    y[100:200] = np.nan
    sf.write(wav, y, sr, subtype="FLOAT")
    args = ["sweep", str(path), "--scale", "tiny", "--dry-run"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"sedsweep: error: {wav}: audio file contains NaN or infinite samples"
    monkeypatch.setattr(runspec, "SAMPLE_CHECK_BYTES", 1000)
    assert main(args) == 0
    assert "checked for NaN and infinite values when features are extracted" in (
        capsys.readouterr().out
    )


def test_train_dry_run_prints_the_same_and_writes_nothing(tmp_path, make_corpus, capsys):
    """Issue 16: `sedsweep train --dry-run` shows what a run would read (data, splits,
    features, what the scale changed, the config) before any compute, and writes nothing;
    a corpus the method cannot split is the same one-line exit 2 as without it."""
    corpus = make_corpus("hand")
    workdir = tmp_path / "w"
    args = ["train", "--method", "null", "--scale", "tiny", "--data", str(corpus)]
    assert main([*args, "--workdir", str(workdir), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("train null at scale tiny for ")
    assert f"data: {corpus.resolve()}: corpus 'hand' (fingerprint " in out
    assert "clips per split: train 3, val 0, test 3" in out
    assert "features: sr " in out and "scale 'tiny' sets: config {" in out
    assert "\nconfig:\n  seed: 0\n" in out
    assert not workdir.exists()
    verified = make_corpus("verified")
    staged = ["train", "--method", "staged", "--scale", "tiny", "--data", str(verified)]
    assert main([*staged, "--workdir", str(workdir), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "set staged.verified_only=true" in err
    assert not workdir.exists()


def test_staged_on_an_all_verified_training_split_is_refused_before_features(
    tmp_path, make_corpus, capsys
):
    """Issue 16: staged on a DCASE import (every clip verified) failed with "stage 2 needs
    unverified training clips" only after feature extraction, and in a sweep after Ray had
    started. Now one line at plan time, with the setting that fixes it."""
    corpus = make_corpus("verified", n=20)  # fold 1 (staged's training folds): all verified
    path = sweep_file(tmp_path, corpus, "staged_k_alpha.yaml")
    assert main(["sweep", str(path), "--scale", "tiny", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path}: split: stage 2 needs unverified" in err
    assert "set staged.verified_only=true" in err and "folds [1, 2]" in err
    workdir = tmp_path / "w"
    args = ["train", "--method", "staged", "--scale", "tiny", "--data", str(corpus)]
    assert main([*args, "--workdir", str(workdir)]) == 2
    assert "set staged.verified_only=true" in capsys.readouterr().err
    assert not (workdir / "feature-cache").exists()  # refused before any extraction
    fixed = ["--set", "fixed.staged.verified_only=true"]
    assert main(["sweep", str(path), "--scale", "tiny", "--dry-run", *fixed]) == 0
    assert "clips per split: train 8" in capsys.readouterr().out


def test_a_split_without_validation_clips_is_refused_at_plan_time(tmp_path, make_corpus, capsys):
    """Issue 32: a corpus whose split leaves no validation clips passed the dry run, and Tune
    crashed after the training (trials are ranked by validation metrics). 6 clips: fold 1
    has 3, and 15 % of 3 rounds to none."""
    corpus = make_corpus("small")
    path = sweep_file(tmp_path, corpus, "null_load.yaml")
    assert main(["sweep", str(path), "--scale", "tiny", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"sedsweep: error: {path}: split: the validation split is empty, and the "
        "objective is a validation metric (the corpus has 6 clips in folds [1, 2])"
    )


def test_a_plan_checks_a_corpus_directory_unless_told_not_to(tmp_path):
    """`sync` replays a journal, maybe on another machine than the corpus: its plan only
    counts trials and must not need the corpus that planning a run checks."""
    from sedsweep.errors import UserError
    from sedsweep.sweep.spec import SweepSpec, plan_sweep

    spec = yaml.safe_load((ROOT / "search_spaces" / "null_load.yaml").read_text())
    spec["data"] = {"path": str(tmp_path / "gone")}
    with pytest.raises(UserError, match="corpus directory not found"):
        plan_sweep(SweepSpec.model_validate(spec), "x.yaml")
    plan = plan_sweep(SweepSpec.model_validate(spec), "x.yaml", check_data=False)
    assert plan.n_trials == spec["budget"]["trials"]
