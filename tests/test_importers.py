"""Importers of NIPS4B(+), FSDKaggle2019 and DCASE metadata, and the remix of the user's audio."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sedsweep.cli import main
from sedsweep.data.audio import read_audio
from sedsweep.data.corpus import Clip, Corpus
from sedsweep.data.importers import (
    import_dcase,
    import_fsdkaggle2019,
    import_nips4b,
    remix_user,
)
from sedsweep.data.mixing import DEFAULT_ONSETS_S, fit_length, mix_scene
from sedsweep.errors import UserError

SR = 8000
SPECIES = ["Aegcau_call", "Alaarv_song", "Sylcan_song"]


def wav(path: Path, seconds: float = 0.5, sr: int = SR, seed: int = 0) -> Path:
    """Write low-level noise as a WAV file (creating folders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.random.default_rng(seed).normal(0, 0.05, int(seconds * sr)), sr)
    return path


def tone(freq: float, seconds: float, sr: int = SR, silence_s: float = 0.0) -> np.ndarray:
    """A sine tone preceded by `silence_s` of digital silence."""
    t = np.arange(int(seconds * sr)) / sr
    return np.concatenate([np.zeros(int(silence_s * sr)), 0.3 * np.sin(2 * np.pi * freq * t)])


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def assert_fails(run: Callable[[], object], out: Path, *fragments: str) -> None:
    """`run` raises a UserError naming every fragment and leaves neither `out` nor a temp dir."""
    with pytest.raises(UserError) as info:
        run()
    for fragment in fragments:
        assert fragment in str(info.value)
    assert not out.exists()
    assert [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")] == []


def wavs_under(root: Path) -> list[Path]:
    return sorted(root.rglob("*.wav"))


# -- NIPS4B -----------------------------------------------------------------------------------
# species per recording 1..6 (recording 6 is 'Empty'); recording 2 lasts 0.4 s at 16 kHz
NIPS4B_LABELS = {1: ["Aegcau_call"], 2: ["Alaarv_song", "Sylcan_song"], 3: [], 4: ["Sylcan_song"]}
NIPS4B_LABELS |= {5: ["Aegcau_call", "Alaarv_song"], 6: []}


@pytest.fixture
def nips4b(tmp_path: Path) -> Path:
    """The challenge layout: title rows, a 'Filename' header, a totals row, NIPS4Bplus files."""
    src = tmp_path / "nips4b"
    lines = [
        "NIPS4B 2013 bird challenge,,,," + ",".join(str(k + 1) for k in range(len(SPECIES))),
        ",,,," + ",".join(SPECIES),
        "Filename,Duration,Empty,Unknown," + ",".join(["1"] * len(SPECIES)),
    ]
    for k in reversed(range(1, 7)):  # out of order on purpose: the importer sorts by number
        cells = ["1" if s in NIPS4B_LABELS[k] else "" for s in SPECIES]
        empty = "" if NIPS4B_LABELS[k] else "1"
        lines.append(f"nips4b_birds_trainfile{k:03d}.wav,0.5,{empty},," + ",".join(cells))
        sr = 16000 if k == 2 else SR
        wav(
            src / f"NIPS4B_BIRD_CHALLENGE_TRAIN_TEST_WAV/train/nips4b_birds_trainfile{k:03d}.wav",
            0.4 if k == 2 else 0.5,
            sr,
            seed=k,
        )
    lines.append("Total,,2,,2,2,2")
    write(
        src / "NIPS4B_BIRD_CHALLENGE_TRAIN_LABELS/nips4b_birdchallenge_train_labels.csv",
        "\n".join(lines) + "\n",
    )
    plus = src / "temporal_annotations_nips4b"
    write(plus / "annotation_train001.csv", "0.1,0.2,Aegcau_call\n0.3,0.1,Unknown\n")
    write(plus / "annotation_train002.csv", "0.05,0.1,Alaarv_song\n0.2,0.5,Sylcan_song\n")
    write(plus / "annotation_train003.csv", "\n")  # annotated: nothing to tag
    write(plus / "annotation_train004.csv", "0.0,0.25,Sylcan_song\n0.3,0.1,Human\n")
    write(plus / "annotation_train005.csv", "0.1,0.1,Aegcau_call\n0.15,0.2,Alaarv_song\n")
    return src  # recording 6 has no annotation file


def test_nips4b_imports_labels_folds_durations_and_events(nips4b, tmp_path):
    out = tmp_path / "out"
    corpus = import_nips4b(nips4b, out, train_count=4)
    audio = nips4b / "NIPS4B_BIRD_CHALLENGE_TRAIN_TEST_WAV/train"
    assert corpus.classes == SPECIES
    assert [c.path for c in corpus.clips] == [
        str((audio / f"nips4b_birds_trainfile{k:03d}.wav").resolve()) for k in range(1, 7)
    ]
    assert [list(c.labels) for c in corpus.clips] == [NIPS4B_LABELS[k] for k in range(1, 7)]
    assert [c.fold for c in corpus.clips] == [1, 1, 1, 1, 2, 2]
    assert all(c.verified for c in corpus.clips)
    # issue 16: recording 6 has no annotation file: weak-only, not a clip without birds
    assert [c.strong for c in corpus.clips] == [True] * 5 + [False]
    assert [c.duration_s for c in corpus.clips] == pytest.approx([0.5, 0.4, 0.5, 0.5, 0.5, 0.5])
    assert corpus.sample_rate == SR  # the most common rate
    spans = [
        (Path(e.filename).name[-7:-4], round(e.onset, 6), round(e.offset, 6), e.label)
        for e in corpus.events
    ]
    assert spans == (
        [
            ("001", 0.1, 0.3, "Aegcau_call"),
            ("002", 0.05, 0.15, "Alaarv_song"),
            ("002", 0.2, 0.4, "Sylcan_song"),  # 0.2 + 0.5 clipped to the 0.4 s clip
            ("004", 0.0, 0.25, "Sylcan_song"),
            ("005", 0.1, 0.2, "Aegcau_call"),
            ("005", 0.15, 0.35, "Alaarv_song"),
        ]
    )
    assert wavs_under(out) == []
    assert corpus.generator["importer"] == "nips4b"
    assert (corpus.generator["events_clipped"], corpus.generator["events_dropped"]) == (1, 0)
    assert corpus.generator["source"] == str(nips4b.resolve())
    loaded = Corpus.load(out)
    assert (loaded.classes, loaded.clips, loaded.events) == (SPECIES, corpus.clips, corpus.events)
    assert loaded.sample_rate == SR


def test_nips4b_default_split_and_single_header_variant_without_annotations(tmp_path):
    src = tmp_path / "flat"
    rows = ["Filename,Empty," + ",".join(SPECIES)]
    for k in range(1, 4):
        rows.append(f"nips4b_birds_trainfile{k:03d},,{'1,0,' if k == 1 else '0,1,'}1")
        wav(src / f"train/nips4b_birds_trainfile{k:03d}.wav", seed=k)
    write(src / "nips4b_birdchallenge_train_labels.csv", "\n".join(rows) + "\n")
    corpus = import_nips4b(src, tmp_path / "out")
    assert [c.labels for c in corpus.clips][:2] == [
        ("Aegcau_call", "Sylcan_song"),
        ("Alaarv_song", "Sylcan_song"),
    ]
    assert {c.fold for c in corpus.clips} == {1}  # all within the first 513
    assert corpus.events is None and corpus.name == "nips4b"
    assert not (tmp_path / "out" / "events.tsv").exists()
    assert import_nips4b(src, tmp_path / "named", name="birds 2013").name == "birds 2013"


def test_nips4b_missing_labels_file_names_the_files_looked_for(nips4b, tmp_path):
    (nips4b / "NIPS4B_BIRD_CHALLENGE_TRAIN_LABELS/nips4b_birdchallenge_train_labels.csv").unlink()
    out = tmp_path / "out"
    assert_fails(
        lambda: import_nips4b(nips4b, out),
        out,
        "NIPS4B_BIRD_CHALLENGE_TRAIN_LABELS/nips4b_birdchallenge_train_labels.csv",
    )


def test_nips4b_missing_audio_names_file_and_row(nips4b, tmp_path):
    (nips4b / "NIPS4B_BIRD_CHALLENGE_TRAIN_TEST_WAV/train/nips4b_birds_trainfile004.wav").unlink()
    out = tmp_path / "out"
    assert_fails(
        lambda: import_nips4b(nips4b, out),
        out,
        "nips4b_birdchallenge_train_labels.csv line 6",
        "nips4b_birds_trainfile004.wav",
    )


def test_nips4b_bad_label_cell_names_row_and_column(nips4b, tmp_path):
    labels = nips4b / "NIPS4B_BIRD_CHALLENGE_TRAIN_LABELS/nips4b_birdchallenge_train_labels.csv"
    labels.write_text(
        labels.read_text().replace("trainfile005.wav,0.5,,,1", "trainfile005.wav,0.5,,,2")
    )
    out = tmp_path / "out"
    assert_fails(lambda: import_nips4b(nips4b, out), out, "line 5", "'Aegcau_call'", "'2'")


def test_nips4bplus_event_with_zero_duration_is_rejected(nips4b, tmp_path):
    write(
        nips4b / "temporal_annotations_nips4b/annotation_train005.csv",
        "0.1,0.1,Aegcau_call\n0.2,0,Alaarv_song\n",
    )
    out = tmp_path / "out"
    assert_fails(
        lambda: import_nips4b(nips4b, out),
        out,
        "annotation_train005.csv line 2",
        "onset 0.2 must be ≥ 0 and < offset 0.2",
    )


def test_nips4bplus_label_outside_the_classes_is_rejected(nips4b, tmp_path):
    write(nips4b / "temporal_annotations_nips4b/annotation_train004.csv", "0.0,0.25,Turphi_song\n")
    out = tmp_path / "out"
    assert_fails(
        lambda: import_nips4b(nips4b, out), out, "annotation_train004.csv line 1", "'Turphi_song'"
    )


# -- FSDKaggle2019 ----------------------------------------------------------------------------
def fsd_tree(src: Path, layout: str) -> Path:
    """Curated (2), noisy (2) and test (2) clips in the Zenodo or Kaggle layout."""
    zenodo = layout == "zenodo"
    meta = src / "FSDKaggle2019.meta" if zenodo else src
    sets = {
        "curated": [
            "fname,labels,freesound_id,license",
            'c1.wav,"Walk_and_footsteps,Slam",1,CC0',
            "c2.wav,Bark,2,CC0",
        ],
        "noisy": [
            "fname,labels,flickr_video_URL,license",
            "n1.wav,Bark,u,CC-BY",
            "n2.wav,Cricket,u,CC-BY",
        ],
        "test": [
            "fname,labels,usage,freesound_id,license",
            "t1.wav,Slam,Public,3,CC0",
            'b.wav,"Bark,Cricket",Private,4,CC0',
        ],
    }
    for name, lines in sets.items():
        audio = src / (
            f"FSDKaggle2019.audio_{'test' if name == 'test' else 'train_' + name}"
            if zenodo
            else ("test" if name == "test" else f"train_{name}")
        )
        for k, line in enumerate(lines[1:]):
            wav(audio / line.split(",")[0], 0.3 + 0.1 * k, seed=k)
        csv_name = f"{'train_' + name if name != 'test' else 'test'}"
        csv_name += "_post_competition.csv" if zenodo or name == "test" else ".csv"
        write(meta / csv_name, "\n".join(lines) + "\n")
    if not zenodo:
        write(src / "sample_submission.csv", "fname,Bark,Slam\nt1.wav,0,0\n")
    return src


@pytest.mark.parametrize("layout", ["zenodo", "kaggle"])
def test_fsdkaggle2019_both_layouts(tmp_path, layout):
    src = fsd_tree(tmp_path / layout, layout)
    out = tmp_path / "out"
    corpus = import_fsdkaggle2019(src, out)
    assert corpus.classes == ["Bark", "Cricket", "Slam", "Walk_and_footsteps"]
    names = [Path(c.path).name for c in corpus.clips]
    assert names == ["c1.wav", "c2.wav", "n1.wav", "n2.wav", "t1.wav", "b.wav"]
    assert [c.labels for c in corpus.clips] == [
        ("Walk_and_footsteps", "Slam"),
        ("Bark",),
        ("Bark",),
        ("Cricket",),
        ("Slam",),
        ("Bark", "Cricket"),
    ]
    assert [(c.fold, c.verified) for c in corpus.clips] == [
        (1, True),
        (1, True),
        (1, False),
        (1, False),
        (2, True),
        (2, True),
    ]
    assert [c.duration_s for c in corpus.clips] == pytest.approx([0.3, 0.4, 0.3, 0.4, 0.3, 0.4])
    assert all(Path(c.path).is_absolute() and Path(c.path).is_file() for c in corpus.clips)
    assert Path(corpus.clips[0].path).parent.name == (
        "FSDKaggle2019.audio_train_curated" if layout == "zenodo" else "train_curated"
    )
    assert corpus.events is None
    assert wavs_under(out) == []
    assert corpus.generator["layout"] == layout
    assert Corpus.load(out).clips == corpus.clips


def test_fsdkaggle2019_without_noisy_and_without_labelled_test(tmp_path):
    src = fsd_tree(tmp_path / "k", "kaggle")
    (src / "train_noisy.csv").unlink()  # not needed when the noisy set is left out
    (src / "test_post_competition.csv").unlink()  # sample_submission.csv has no labels
    corpus = import_fsdkaggle2019(src, tmp_path / "out", include_noisy=False)
    assert [Path(c.path).name for c in corpus.clips] == ["c1.wav", "c2.wav"]
    assert corpus.classes == ["Bark", "Slam", "Walk_and_footsteps"]
    assert corpus.name == "fsdkaggle2019"
    named = import_fsdkaggle2019(src, tmp_path / "named", include_noisy=False, name="fsd")
    assert Corpus.load(tmp_path / "named").name == named.name == "fsd"


def test_fsdkaggle2019_missing_metadata_names_both_layouts(tmp_path):
    src = tmp_path / "empty"
    src.mkdir()
    out = tmp_path / "out"
    assert_fails(
        lambda: import_fsdkaggle2019(src, out),
        out,
        "FSDKaggle2019.meta/train_curated_post_competition.csv",
        "train_curated.csv",
    )


def test_fsdkaggle2019_missing_noisy_metadata_is_an_error_when_included(tmp_path):
    src = fsd_tree(tmp_path / "z", "zenodo")
    (src / "FSDKaggle2019.meta/train_noisy_post_competition.csv").unlink()
    out = tmp_path / "out"
    assert_fails(lambda: import_fsdkaggle2019(src, out), out, "train_noisy_post_competition.csv")


def test_fsdkaggle2019_label_column_missing(tmp_path):
    src = fsd_tree(tmp_path / "k", "kaggle")
    write(src / "train_curated.csv", "fname,tags\nc1.wav,Bark\n")
    out = tmp_path / "out"
    assert_fails(lambda: import_fsdkaggle2019(src, out), out, "train_curated.csv", "labels")


def test_fsdkaggle2019_missing_audio_names_file_and_row(tmp_path):
    src = fsd_tree(tmp_path / "k", "kaggle")
    (src / "train_noisy/n2.wav").unlink()
    out = tmp_path / "out"
    assert_fails(lambda: import_fsdkaggle2019(src, out), out, "train_noisy.csv line 3", "n2.wav")


@pytest.mark.parametrize(
    "content", [b"", np.random.default_rng(1).bytes(300)], ids=["empty", "noise"]
)
def test_fsdkaggle2019_corrupt_or_zero_length_wav(tmp_path, content):
    src = fsd_tree(tmp_path / "k", "kaggle")
    (src / "train_curated/c2.wav").write_bytes(content)
    out = tmp_path / "out"
    assert_fails(lambda: import_fsdkaggle2019(src, out), out, "c2.wav")


def test_zero_frame_wav_is_rejected(tmp_path):
    src = fsd_tree(tmp_path / "k", "kaggle")
    sf.write(src / "train_curated/c2.wav", np.zeros(0), SR)  # a valid header, no samples
    out = tmp_path / "out"
    assert_fails(lambda: import_fsdkaggle2019(src, out), out, "c2.wav", "zero length")


# -- DCASE ------------------------------------------------------------------------------------
@pytest.fixture
def dcase(tmp_path: Path) -> Path:
    """DESED-like: weak train.tsv and strong validation.tsv in metadata/, audio in sub-folders."""
    src = tmp_path / "desed"
    for name in ("w1.wav", "w2.wav", "w3.wav"):
        wav(src / "audio/train/weak" / name)
    for name in ("v1.wav", "v2.wav", "v3.wav"):
        wav(src / "audio/validation" / name, 1.0)
    write(
        src / "metadata/train.tsv",
        "filename\tevent_labels\nw1.wav\tSpeech,Dog\nw2.wav\t\nw3.wav\tCat\n",
    )
    write(
        src / "metadata/validation.tsv",
        "filename\tonset\toffset\tevent_label\n"
        "v1.wav\t0.1\t0.4\tDog\nv1.wav\t0.5\t1.2\tSpeech\n"  # beyond 1.0 s: clipped
        "v2.wav\t\t\t\n"  # a clip with no events
        "v3.wav\t0.0\t0.3\tAlarm_bell_ringing\n",
    )
    return src


def test_dcase_weak_and_strong_files_become_folds(dcase, tmp_path):
    out = tmp_path / "out"
    corpus = import_dcase(dcase, out)
    assert corpus.classes == ["Alarm_bell_ringing", "Cat", "Dog", "Speech"]
    assert [(Path(c.path).name, c.labels, c.fold) for c in corpus.clips] == [
        ("w1.wav", ("Speech", "Dog"), 1),
        ("w2.wav", (), 1),
        ("w3.wav", ("Cat",), 1),
        ("v1.wav", ("Dog", "Speech"), 2),
        ("v2.wav", (), 2),
        ("v3.wav", ("Alarm_bell_ringing",), 2),
    ]
    assert corpus.clips[3].path == str((dcase / "audio/validation/v1.wav").resolve())
    assert [c.strong for c in corpus.clips] == [False] * 3 + [True] * 3  # weak file: weak-only
    assert [c.duration_s for c in corpus.clips] == pytest.approx([0.5] * 3 + [1.0] * 3)
    assert [(Path(e.filename).name, e.onset, e.offset, e.label) for e in corpus.events] == [
        ("v1.wav", 0.1, 0.4, "Dog"),
        ("v1.wav", 0.5, 1.0, "Speech"),
        ("v3.wav", 0.0, 0.3, "Alarm_bell_ringing"),
    ]
    assert wavs_under(out) == []
    assert len(corpus.generator["meta"]) == 2
    loaded = Corpus.load(out)
    assert (loaded.clips, loaded.events) == (corpus.clips, corpus.events)


def test_dcase_headerless_csv_with_explicit_meta_and_audio_dir(dcase, tmp_path):
    meta = write(tmp_path / "strong.csv", "v3.wav,0.2,0.6,Dog\nv1.wav,0.0,0.5,Cat\n")
    corpus = import_dcase(
        dcase, tmp_path / "out", meta=[meta], audio_dir=dcase / "audio/validation"
    )
    assert [(Path(c.path).name, c.labels, c.fold) for c in corpus.clips] == [
        ("v3.wav", ("Dog",), 1),
        ("v1.wav", ("Cat",), 1),
    ]
    assert [(e.onset, e.offset) for e in corpus.events] == [(0.2, 0.6), (0.0, 0.5)]


def test_dcase_onset_not_before_offset(dcase, tmp_path):
    write(
        dcase / "metadata/validation.tsv",
        "filename\tonset\toffset\tevent_label\nv1.wav\t0.4\t0.2\tDog\n",
    )
    out = tmp_path / "out"
    assert_fails(
        lambda: import_dcase(dcase, out),
        out,
        "validation.tsv line 2",
        "onset 0.4 must be ≥ 0 and < offset 0.2",
    )


def test_dcase_missing_metadata(dcase, tmp_path):
    out = tmp_path / "out"
    assert_fails(
        lambda: import_dcase(dcase, out, meta=[dcase / "metadata/eval.tsv"]),
        out,
        "eval.tsv",
        "metadata file not found",
    )
    bare = tmp_path / "bare"
    wav(bare / "a.wav")
    assert_fails(lambda: import_dcase(bare, out), out, "*.tsv and *.csv", "src/metadata")


def test_dcase_missing_audio_names_file_and_row(dcase, tmp_path):
    (dcase / "audio/train/weak/w3.wav").unlink()
    out = tmp_path / "out"
    assert_fails(lambda: import_dcase(dcase, out), out, "train.tsv line 4", "w3.wav")


def test_dcase_ambiguous_file_name(dcase, tmp_path):
    wav(dcase / "audio/copy/w1.wav")
    out = tmp_path / "out"
    assert_fails(
        lambda: import_dcase(dcase, out), out, "train.tsv line 2", "ambiguous", "--audio-dir"
    )


def test_dcase_label_column_missing(dcase, tmp_path):
    write(dcase / "metadata/train.tsv", "filename\tscene\nw1.wav\thome\n")
    out = tmp_path / "out"
    assert_fails(lambda: import_dcase(dcase, out), out, "train.tsv", "event_labels")


def test_dcase_header_synonyms_in_any_case_csv_and_tsv_extra_columns(dcase, tmp_path):
    """Issue 16: `path,onset,offset,label,...` was 'no header row'; both files of a folder
    are read, the corpus is named after --out."""
    src = tmp_path / "mine"
    for name in ("a.wav", "b.wav", "c.wav"):
        wav(src / "audio" / name, 1.0)
    write(src / "strong.csv", "Path,Onset,Offset,Label,annotator\na.wav,0.1,0.5,Dog,x\n")
    write(src / "weak.tsv", "FILE\tLabels\tsource\nb.wav\tCat,Dog\tweb\nc.wav\t\tweb\n")
    corpus = import_dcase(src, tmp_path / "office_remix")
    assert corpus.name == "office_remix"
    assert [(Path(c.path).name, c.labels, c.fold) for c in corpus.clips] == [
        ("a.wav", ("Dog",), 1),
        ("b.wav", ("Cat", "Dog"), 2),
        ("c.wav", (), 2),
    ]
    assert [(e.onset, e.offset, e.label) for e in corpus.events] == [(0.1, 0.5, "Dog")]
    named = import_dcase(src, tmp_path / "other", name=" forest office ")
    assert named.name == Corpus.load(tmp_path / "other").name == "forest office"


def test_dcase_fold_column_gives_the_folds(tmp_path):
    src = tmp_path / "src"
    for name in ("a.wav", "b.wav", "c.wav"):
        wav(src / name, 1.0)
    write(
        src / "meta.tsv",
        "filename\tonset\toffset\tevent_label\tfold\n"
        "a.wav\t0.1\t0.2\tDog\t3\na.wav\t0.3\t0.4\tCat\t3\nb.wav\t\t\t\t1\n"
        "c.wav\t0.0\t0.5\tDog\t2\n",
    )
    corpus = import_dcase(src, tmp_path / "out")
    assert [(Path(c.path).name, c.fold) for c in corpus.clips] == [
        ("a.wav", 3),
        ("b.wav", 1),
        ("c.wav", 2),
    ]


def held_out_layout(src: Path, strong_extra: str = "") -> None:
    """A real layout (issue 35): weak.csv (`path,labels,fold,...`, labels separated by ';')
    and strong.csv (`path,onset,offset,label,...`, no fold column) for the same clips."""
    for name in ("a.wav", "b.wav", "c.wav"):
        wav(src / "audio" / name, 2.0)
    write(src / "weak.csv",
          "path,labels,fold,source\naudio/a.wav,doorslam;keys;phone,1,x\n"
          "audio/b.wav,keys,2,y\naudio/c.wav,,3,z\n")  # fmt: skip
    write(src / "strong.csv",
          "path,onset,offset,label,annotator\naudio/a.wav,0.1,0.5,doorslam,1\n"
          "audio/a.wav,0.6,0.9,keys,1\naudio/a.wav,1.0,1.5,phone,2\n"
          f"audio/b.wav,0.2,1.2,keys,1\naudio/c.wav,,,,1\n{strong_extra}")  # fmt: skip


def test_dcase_joins_a_weak_and_a_strong_file_by_clip_path(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    held_out_layout(src)
    assert main(["data", "import", "dcase", str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "weak.csv: labels separated by ';'" in printed and "3 clips" in printed
    corpus = Corpus.load(out)
    clips = {Path(c.path).name: c for c in corpus.clips}
    assert {n: (c.labels, c.fold, c.strong) for n, c in clips.items()} == {
        "a.wav": (("doorslam", "keys", "phone"), 1, True),
        "b.wav": (("keys",), 2, True),
        "c.wav": ((), 3, True),
    }
    events = sorted((Path(e.filename).name, e.onset, e.offset, e.label) for e in corpus.events)
    assert events == [("a.wav", 0.1, 0.5, "doorslam"), ("a.wav", 0.6, 0.9, "keys"),
                      ("a.wav", 1.0, 1.5, "phone"), ("b.wav", 0.2, 1.2, "keys")]  # fmt: skip


@pytest.mark.parametrize("separator", [",", ";", "|"])
def test_dcase_weak_labels_take_the_separator_their_file_uses(tmp_path, separator):
    src = tmp_path / "src"
    wav(src / "a.wav", 1.0)
    wav(src / "b.wav", 1.0)
    write(src / "weak.tsv", f"filename\tlabels\na.wav\tDog{separator} Cat\nb.wav\tCat\n")
    corpus = import_dcase(src, tmp_path / "out")
    assert [c.labels for c in corpus.clips] == [("Dog", "Cat"), ("Cat",)]
    assert corpus.generator["label_separators"] == {"weak.tsv": separator}


@pytest.mark.parametrize(
    ("files", "fragments"),
    [
        (
            {"m.csv": "clip,start,end,class\na.wav,0,1,Dog\n"},
            ["m.csv", "header not understood", "clip, start, end, class", "filename|path|file"],
        ),
        (
            {"m.csv": "filename,onset,offset\na.wav,0,1\n"},
            ["m.csv", "missing column(s) event_label", "found filename, onset, offset"],
        ),
        (
            {"m.csv": "filename,labels,fold\na.wav,Dog,1.5\n"},
            ["m.csv line 2", "'fold' must be an integer ≥ 1, not '1.5'"],
        ),
        (
            {"m.csv": "filename,labels,fold\na.wav,Dog,0\n"},
            ["m.csv line 2", "'fold' must be an integer ≥ 1, not '0'"],
        ),
        (
            {"m.csv": "filename,onset,offset,label,fold\na.wav,0,1,Dog,1\na.wav,1,2,Dog,2\n"},
            ["m.csv line 3", "fold 2 differs from fold 1", "'a.wav'"],
        ),
        (
            {"a.csv": "filename,labels,fold\na.wav,Dog,1\n", "b.csv": "filename,labels\nb.wav,\n"},
            ["b.csv line 2", "'b.wav' has no fold: its file has no fold column and no file"],
        ),
        (
            {"m.tsv": "filename\tlabels\na.wav\tDog;Cat\nb.wav\tDog,Cat\n"},
            ["m.tsv", "label lists use both ',' and ';': use one separator per file"],
        ),
        (
            {
                "a.csv": "filename,labels,fold\na.wav,Dog,1\n",
                "b.csv": "filename,onset,offset,event_label,fold\na.wav,0,1,Dog,2\n",
            },
            ["b.csv line 2", "fold 2 differs from fold 1 of 'a.wav' at ", "a.csv line 2"],
        ),
    ],
    ids=[
        "unknown-header",
        "strong-without-label",
        "fold-fraction",
        "fold-zero",
        "fold-differs",
        "fold-in-one-file",
        "mixed-separators",
        "joined-folds-differ",
    ],
)
def test_dcase_bad_columns_and_folds_are_one_line_errors(tmp_path, files, fragments):
    src = tmp_path / "src"
    wav(src / "a.wav", 2.0)
    wav(src / "b.wav", 2.0)
    for name, text in files.items():
        write(src / name, text)
    out = tmp_path / "out"
    assert_fails(lambda: import_dcase(src, out), out, *fragments)


def test_dcase_a_strong_clip_no_weak_file_names_is_an_error_naming_it(tmp_path):
    src = tmp_path / "src"
    held_out_layout(src)
    wav(src / "audio" / "d.wav", 2.0)
    write(src / "strong.csv", (src / "strong.csv").read_text() + "audio/d.wav,0.1,0.2,keys,1\n")
    out = tmp_path / "out"
    assert_fails(lambda: import_dcase(src, out), out, "strong.csv line 7",
                 "'audio/d.wav' has no fold: its file has no fold column")  # fmt: skip


def test_events_past_the_clip_end_are_cut_or_dropped_and_counted_unless_strict(dcase, tmp_path):
    """Issue 16: one annotation past its clip's end aborted the whole import. Now cut at the
    end (past the 0.05 s tolerance: counted) or dropped when it starts beyond it (counted);
    --strict refuses either, naming the row."""
    write(
        dcase / "metadata/validation.tsv",
        "filename\tonset\toffset\tevent_label\n"
        "v1.wav\t0.1\t1.03\tDog\n"  # within the tolerance of the 1.0 s clip: not counted
        "v2.wav\t0.5\t1.5\tCat\n"  # cut at 1.0
        "v3.wav\t1.2\t1.6\tDog\n",  # starts beyond the clip: dropped
    )
    corpus = import_dcase(dcase, tmp_path / "out")
    assert [(Path(e.filename).name, e.onset, e.offset) for e in corpus.events] == [
        ("v1.wav", 0.1, 1.0),
        ("v2.wav", 0.5, 1.0),
    ]
    assert (corpus.generator["events_clipped"], corpus.generator["events_dropped"]) == (1, 1)
    out = tmp_path / "strict"
    assert_fails(
        lambda: import_dcase(dcase, out, strict=True),
        out,
        "validation.tsv line 3",
        "runs past the clip's end (1 s",
    )


@pytest.mark.parametrize("importer", [import_nips4b, import_fsdkaggle2019, import_dcase])
def test_an_empty_corpus_name_is_refused(nips4b, dcase, tmp_path, importer):
    src = {import_nips4b: nips4b, import_dcase: dcase}.get(importer) or fsd_tree(
        tmp_path / "k", "kaggle"
    )
    out = tmp_path / "out"
    assert_fails(lambda: importer(src, out, name="  "), out, "--name", "must not be empty")


@pytest.mark.parametrize("importer", [import_nips4b, import_fsdkaggle2019, import_dcase])
def test_missing_source_directory(tmp_path, importer):
    out = tmp_path / "out"
    assert_fails(
        lambda: importer(tmp_path / "nowhere", out), out, "nowhere", "source directory not found"
    )


def test_existing_output_needs_overwrite(dcase, tmp_path):
    out = tmp_path / "out"
    import_dcase(dcase, out)
    with pytest.raises(UserError, match="not empty"):
        import_dcase(dcase, out)
    assert import_dcase(dcase, out, overwrite=True).root == out


# -- remix_user -------------------------------------------------------------------------------
FREQS = {"bell": 500.0, "bird": 1100.0, "car": 1700.0, "dog": 2300.0}


@pytest.fixture
def user_audio(tmp_path: Path) -> tuple[Path, Path]:
    """Class folders of tone events (with leading silence, longer than allowed) and one scene."""
    events = tmp_path / "events"
    for label, freq in FREQS.items():
        for k in range(2):
            (events / label).mkdir(parents=True, exist_ok=True)
            sf.write(events / label / f"{k}.wav", tone(freq + 50 * k, 1.5, silence_s=0.2), SR)
    backgrounds = tmp_path / "scenes"
    wav(backgrounds / "park/scene.wav", 4.0, seed=9)
    return events, backgrounds


def check_mixtures(corpus: Corpus, background: Path, clip_s: float) -> None:
    """Three distinct, non-overlapping events per clip, exactly where energy was added."""
    scene = fit_length(read_audio(background, SR)[0], int(clip_s * SR))
    for clip, events in zip(corpus.clips, corpus.events_by_clip(), strict=True):
        assert len(events) == 3
        assert sorted(clip.labels) == sorted(e.label for e in events) and len(set(clip.labels)) == 3
        spans = sorted((e.onset, e.offset) for e in events)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
        mixture, sr = sf.read(corpus.audio_path(clip), dtype="float32")
        assert sr == SR and len(mixture) == len(scene)
        residual = mixture - mix_scene(scene, SR, [], clip.snr_db)[0]
        inside = np.zeros(len(residual), dtype=bool)
        for onset, offset in spans:
            part = residual[round(onset * SR) : round(offset * SR)]
            assert np.sqrt(np.mean(part**2)) > 0.01  # the event is there over its whole span
            assert np.sqrt(np.mean(part[: len(part) // 4] ** 2)) > 0.01  # leading silence trimmed
            inside[round(onset * SR) : round(offset * SR)] = True
        assert np.max(np.abs(residual[~inside])) < 1e-3  # and nowhere else


def test_remix_user_class_folders_subdirs_paired(user_audio, tmp_path):
    events, backgrounds = user_audio
    out = tmp_path / "remix"
    corpora = remix_user(
        events, backgrounds, out, snr_db=[0, 10], clip_s=4.0, max_event_s=0.8, folds=2, sr=SR
    )
    assert [c.root for c in corpora] == [out / "snr_0db", out / "snr_10db"]
    low, high = (Corpus.load(c.root) for c in corpora)
    assert len(low.clips) == 8 // 3  # event files // events per clip
    assert low.classes == sorted(FREQS) and low.sample_rate == SR
    assert [c.fold for c in low.clips] == [1, 2]
    assert {c.snr_db for c in high.clips} == {10.0}
    for corpus in (low, high):
        check_mixtures(corpus, backgrounds / "park/scene.wav", 4.0)
    # the same draws at every SNR; slots evenly spaced because the 2APAE ones do not fit in 4 s
    assert [(e.filename, e.onset, e.offset, e.label) for e in low.events] == [
        (e.filename, e.onset, e.offset, e.label) for e in high.events
    ]
    assert sorted({e.onset for e in low.events}) == pytest.approx(
        [0.5, 0.5 + 4 / 3, 0.5 + 8 / 3], abs=1e-3
    )
    assert {round(e.offset - e.onset, 6) for e in low.events} == {0.8}
    assert low.generator["importer"] == "remix_user"


def test_remix_user_corpus_source_column_layout_default_slots(user_audio, tmp_path):
    events, backgrounds = user_audio
    clips = [Clip(str(p), (p.parent.name,), 1, True, 1.7) for p in sorted(events.rglob("*.wav"))]
    clips.append(Clip(str(wav(tmp_path / "mixed.wav", 1.0)), ("bell", "dog"), 1, True, 1.0))
    source = tmp_path / "isolated"
    Corpus(source, "isolated", sorted(FREQS), clips, None, SR).write()
    out = tmp_path / "remix"
    [corpus] = remix_user(
        source / "clips.csv",
        backgrounds,
        out,
        snr_db=["0", 5.0],
        clips=4,
        layout="column",
        folds=1,
        sr=SR,
    )
    loaded = Corpus.load(out)
    assert loaded.clips == corpus.clips and len(loaded.clips) == 8
    assert [c.snr_db for c in loaded.clips] == [0.0] * 4 + [5.0] * 4
    check_mixtures(loaded, backgrounds / "park/scene.wav", 10.0)
    assert {e.onset for e in loaded.events} == set(DEFAULT_ONSETS_S)
    assert all(1.5 <= e.offset - e.onset < 1.7 for e in loaded.events)  # trimmed, under 2 s


@pytest.mark.parametrize("bad", ["loud", "nan", None])
def test_remix_user_rejects_non_numeric_snr(user_audio, tmp_path, bad):
    events, backgrounds = user_audio
    out = tmp_path / "remix"
    assert_fails(
        lambda: remix_user(events, backgrounds, out, snr_db=[0, bad], sr=SR),
        out,
        "--snr",
        repr(bad),
    )


def test_remix_user_needs_enough_classes(user_audio, tmp_path):
    events, backgrounds = user_audio
    out = tmp_path / "remix"
    assert_fails(
        lambda: remix_user(events, backgrounds, out, snr_db=[0], events_per_clip=5, sr=SR),
        out,
        "4 event classes",
        "5 events per clip",
    )


def test_remix_user_rejects_corrupt_event_without_leaving_output(user_audio, tmp_path):
    events, backgrounds = user_audio
    for path in events.rglob("*.wav"):
        path.write_bytes(b"RIFF-not-really")
    out = tmp_path / "remix"
    assert_fails(
        lambda: remix_user(
            events, backgrounds, out, snr_db=[0], clip_s=4.0, max_event_s=0.8, folds=1, sr=SR
        ),
        out,
        ".wav",
        "unreadable",
    )
    assert json.dumps(sorted(p.name for p in tmp_path.iterdir())) == '["events", "scenes"]'


# -- real recordings (../shared/realaudio: forest soundscapes and ESC-10 clips) ---------------
REAL = Path(__file__).resolve().parents[2] / "shared" / "realaudio"
real_audio = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/realaudio is not beside")
ESC10 = ["chainsaw", "clock_tick", "crackling_fire", "crying_baby", "dog", "helicopter", "rain",
         "rooster", "sea_waves", "sneezing"]  # fmt: skip


@real_audio
def test_the_realaudio_manifest_imports_as_is_with_its_fold_column(tmp_path):
    """Issue 16: a table of `path,labels,fold,...` (other columns too) is a DCASE weak file to
    `import dcase`: read by its synonyms, folded by its fold column, no converter."""
    import csv

    corpus = import_dcase(REAL, tmp_path / "forest_esc10", meta=[REAL / "manifest.csv"])
    with open(REAL / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert corpus.name == "forest_esc10" and corpus.classes == ESC10
    assert [Path(c.path) for c in corpus.clips] == [(REAL / r["path"]).resolve() for r in rows]
    assert [c.fold for c in corpus.clips] == [int(r["fold"]) for r in rows]
    assert [c.labels for c in corpus.clips] == [(r["labels"],) if r["labels"] else () for r in rows]
    assert [c.duration_s for c in corpus.clips] == pytest.approx(
        [float(r["duration_s"]) for r in rows], abs=1e-3
    )
    assert corpus.sample_rate == 16000 and corpus.events is None


@real_audio
def test_remix_of_real_events_into_real_soundscapes(tmp_path):
    """`data remix` on real audio: ESC-10 events into forest recordings at 0 and 20 dB, the
    same draws at both SNRs, so outside the events the two mixtures are the same background
    (up to the global gain that keeps a mixture's peak below 1) and inside they differ."""
    low, high = remix_user(
        REAL / "esc10", REAL / "backgrounds", tmp_path / "remix", snr_db=[0, 20], clips=6,
        folds=3, sr=16000, seed=1,
    )  # fmt: skip
    assert low.classes == ESC10 and [c.fold for c in low.clips] == [1, 2, 3, 1, 2, 3]
    assert [e.label for e in low.events] == [e.label for e in high.events]
    for a, b, events in zip(low.clips, high.clips, low.events_by_clip(), strict=True):
        assert len(events) == 3 and len({e.label for e in events}) == 3
        x, sr = sf.read(low.audio_path(a), dtype="float32")
        y, _ = sf.read(high.audio_path(b), dtype="float32")
        assert sr == 16000 and len(x) == len(y) == 10 * sr
        inside = np.zeros(len(x), dtype=bool)
        for e in events:
            inside[round(e.onset * sr) : round(e.offset * sr)] = True
        gain = np.dot(x[~inside], y[~inside]) / np.dot(y[~inside], y[~inside])
        outside = x[~inside] - gain * y[~inside]
        # 16-bit rounding, scaled by the gain, is all that is left (another cut: about 140 %)
        assert np.sqrt(np.mean(outside**2)) < 0.05 * np.sqrt(np.mean(x[~inside] ** 2))
        inner = x[inside] - gain * y[inside]  # the events, at different levels
        assert np.sqrt(np.mean(inner**2)) > 0.1 * np.sqrt(np.mean(x[inside] ** 2))


@real_audio
def test_a_run_can_remix_real_recordings_once_into_the_workdir(tmp_path, capsys):
    """Issue 16: `data: {remix: …}` builds the remix of real events into real soundscapes
    on first use, at the features' sample rate, and reuses it (search_spaces/mtl_realaudio)."""
    from sedsweep.cli import main
    from sedsweep.runspec import RunSpec, corpus_for, resolve

    remix = {"events": str(REAL / "esc10"), "backgrounds": str(REAL / "backgrounds"),
             "snr_db": 10, "clips": 6, "folds": 3}  # fmt: skip
    resolved = resolve(
        RunSpec(method="mtl_attention", scale="tiny", data={"remix": remix}), where="test"
    )
    corpus = corpus_for(resolved, tmp_path)
    assert len(corpus.clips) == 6 and corpus.classes == ESC10 and corpus.folds == [1, 2, 3]
    assert corpus.sample_rate == resolved.feature_params.sr == 16000
    assert {c.snr_db for c in corpus.clips} == {10.0} and len(corpus.events) == 18
    assert corpus_for(resolved, tmp_path).root == corpus.root
    assert len(list((tmp_path / "corpora").iterdir())) == 1
    both = tmp_path / "both.yaml"
    both.write_text(
        "name: x\nmethod: mtl_attention\nobjective: {metric: val/ap_micro, mode: max}\n"
        f"data: {{path: {tmp_path}, remix: {{events: a, backgrounds: b}}}}\n"
    )
    assert main(["sweep", str(both), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "remix is a data source of its own" in err, err
