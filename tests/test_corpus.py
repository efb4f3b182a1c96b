"""The corpus format: loading, writing, splits, fingerprint, and one test per malformed input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from sedsweep.cli import main
from sedsweep.data.corpus import Corpus
from sedsweep.errors import UserError


def test_load_exposes_clips_labels_events_folds(make_corpus):
    corpus = Corpus.load(make_corpus(n=6))
    assert corpus.classes == ["a", "b"]
    assert len(corpus.clips) == 6
    y = corpus.weak_labels()
    np.testing.assert_array_equal(y[:, 0], [0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(y[:, 1], [0, 1, 0, 1, 0, 1])
    assert corpus.folds == [1, 2]
    assert corpus.indices([1]).tolist() == [0, 2, 4]
    assert corpus.indices(verified=False).tolist() == [5]
    per_clip = corpus.events_by_clip()
    assert per_clip[0] == []
    assert [(e.onset, e.offset, e.label) for e in per_clip[1]] == [(0.5, 1.0, "a"), (1.2, 1.6, "b")]
    test = corpus.split([2])
    assert [c.path for c in test.clips] == ["audio/c1.wav", "audio/c3.wav", "audio/c5.wav"]
    assert {e.filename for e in test.events} == {c.path for c in test.clips}


def test_write_round_trips(make_corpus, tmp_path):
    corpus = Corpus.load(make_corpus())
    out = tmp_path / "copy"
    # absolute audio paths so the copy refers to the original audio
    clips = [
        type(c)(str(corpus.audio_path(c)), c.labels, c.fold, c.verified, c.duration_s)
        for c in corpus.clips
    ]
    events = [
        type(e)(str(corpus.root / e.filename), e.onset, e.offset, e.label) for e in corpus.events
    ]
    copy = Corpus(out, corpus.name, corpus.classes, clips, events, corpus.sample_rate, {"k": 1})
    copy.write()
    again = Corpus.load(out)
    assert again.clips == clips
    assert again.events == events
    assert again.generator == {"k": 1}
    assert json.loads((out / "corpus.json").read_text())["fingerprint"] == again.fingerprint()


def test_fingerprint_is_stable_and_tracks_changes(make_corpus):
    root = make_corpus()
    first = Corpus.load(root).fingerprint()
    assert Corpus.load(root).fingerprint() == first
    text = (root / "clips.csv").read_text().replace("audio/c2.wav,a,", "audio/c2.wav,a;b,")
    (root / "clips.csv").write_text(text)
    relabelled = Corpus.load(root).fingerprint()
    assert relabelled != first
    wav = root / "audio" / "c3.wav"
    st = wav.stat()
    os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert Corpus.load(root).fingerprint() != relabelled
    content = Corpus.load(root).fingerprint(content=True)
    os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert Corpus.load(root).fingerprint(content=True) == content


def test_weak_only_clips_round_trip_and_count(make_corpus, capsys):
    """Issue 16: the corpus format says which clips have a complete strong annotation (the
    optional `strong` column, written only when some clip has none)."""
    from dataclasses import replace

    root = make_corpus()
    corpus = Corpus.load(root)
    assert "strong" not in (root / "clips.csv").read_text().splitlines()[0]
    assert corpus.strong_clips().all()
    before = corpus.fingerprint()
    flags = [c.path != "audio/c1.wav" for c in corpus.clips]
    clips = [replace(c, strong=f) for c, f in zip(corpus.clips, flags, strict=True)]
    replace(corpus, clips=clips).write()
    again = Corpus.load(root)
    assert (root / "clips.csv").read_text().splitlines()[0].endswith(",strong")
    assert again.strong_clips().tolist() == flags and again.fingerprint() != before
    assert again.summary()["strong_annotated_clips"] == len(flags) - 1
    assert main(["data", "info", str(root)]) == 0
    assert "weak-only     1 clips" in capsys.readouterr().out
    lines = (root / "clips.csv").read_text().splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0] + ",yes"  # audio/c1.wav
    (root / "clips.csv").write_text("\n".join(lines) + "\n")
    assert main(["data", "info", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "clips.csv line 3" in err, err
    assert "field 'strong' must be 0 (weak labels only) or 1" in err


def test_summary(make_corpus):
    info = Corpus.load(make_corpus(n=6)).summary()
    assert info["clips"] == 6
    assert info["negative_clips"] == 1
    assert info["per_class_counts"] == {"a": 5, "b": 3}
    assert info["label_cardinality"] == pytest.approx(8 / 6)
    assert info["cardinality_histogram"] == {"0": 1, "1": 2, "2": 3}
    assert info["folds"] == {"1": 3, "2": 3}
    assert info["verified_share"] == pytest.approx(5 / 6)
    assert info["strong_events"] == 8
    assert info["strong_coverage"] == pytest.approx(5 / 6)


def test_info_cli_json(make_corpus, capsys):
    assert main(["data", "info", str(make_corpus()), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["clips"] == 6


def _edit(root: Path, name: str, old: str, new: str) -> None:
    path = root / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


# Each malformed input: (edit to apply, text the one-line error must contain).
BAD_INPUTS = {
    "missing_clips_csv": (lambda r: (r / "clips.csv").unlink(), ["clips.csv", "missing"]),
    "missing_corpus_json": (lambda r: (r / "corpus.json").unlink(), ["corpus.json", "missing"]),
    "malformed_corpus_json": (
        lambda r: (r / "corpus.json").write_text("{not json"),
        ["corpus.json", "JSON"],
    ),
    "class_with_spaces": (
        lambda r: (r / "corpus.json").write_text(
            '{"name": "x", "sample_rate": 16000, "classes": ["a", " b "]}'
        ),
        ["corpus.json", "' b ' has surrounding spaces"],
    ),
    "corpus_json_no_classes": (
        lambda r: (r / "corpus.json").write_text('{"name": "x", "sample_rate": 16000}'),
        ["corpus.json", "'classes'"],
    ),
    "missing_column": (
        lambda r: _edit(r, "clips.csv", "path,labels,fold,", "path,labels,"),
        ["clips.csv", "missing column", "fold"],
    ),
    "extra_column": (
        lambda r: _edit(r, "clips.csv", "duration_s", "duration_s,colour"),
        ["clips.csv", "unknown column", "colour"],
    ),
    "label_not_in_classes": (
        lambda r: _edit(r, "clips.csv", "audio/c2.wav,a,", "audio/c2.wav,zebra,"),
        ["clips.csv line 4", "'labels'", "zebra"],
    ),
    "missing_audio": (
        lambda r: (r / "audio" / "c3.wav").unlink(),
        ["clips.csv line 5", "'path'", "c3.wav"],
    ),
    "bad_fold": (
        lambda r: _edit(r, "clips.csv", "audio/c1.wav,a;b,2,", "audio/c1.wav,a;b,two,"),
        ["clips.csv line 3", "'fold'"],
    ),
    "bad_verified": (
        lambda r: _edit(r, "clips.csv", "audio/c1.wav,a;b,2,1,", "audio/c1.wav,a;b,2,yes,"),
        ["clips.csv line 3", "'verified'"],
    ),
    "bad_duration": (
        lambda r: _edit(r, "clips.csv", "audio/c1.wav,a;b,2,1,2.0", "audio/c1.wav,a;b,2,1,-1"),
        ["clips.csv line 3", "'duration_s'"],
    ),
    "event_onset_after_offset": (
        lambda r: _edit(r, "events.tsv", "audio/c1.wav\t0.5\t1.0", "audio/c1.wav\t1.0\t0.5"),
        ["events.tsv line 2", "onset"],
    ),
    "event_beyond_clip": (
        lambda r: _edit(r, "events.tsv", "audio/c1.wav\t1.2\t1.6", "audio/c1.wav\t1.2\t9.5"),
        ["events.tsv line 3", "'offset'"],
    ),
    "event_unknown_file": (
        lambda r: _edit(r, "events.tsv", "audio/c2.wav\t", "audio/nope.wav\t"),
        ["events.tsv", "'filename'", "nope.wav"],
    ),
    "event_unknown_label": (
        lambda r: _edit(r, "events.tsv", "1.6\tb", "1.6\towl"),
        ["events.tsv line 3", "'event_label'", "owl"],
    ),
    "event_non_numeric": (
        lambda r: _edit(r, "events.tsv", "audio/c1.wav\t0.5", "audio/c1.wav\tsoon"),
        ["events.tsv line 2", "'onset'"],
    ),
    # issue 15 F14 / F16: encodings, one file under two spellings, paths out of the corpus,
    # numbers no corpus has
    "fold_absurd": (
        lambda r: _edit(r, "clips.csv", "audio/c1.wav,a;b,2,", f"audio/c1.wav,a;b,{10**30},"),
        ["clips.csv line 3", "'fold' must be 0 to 1000"],
    ),
    "duration_absurd": (
        lambda r: _edit(r, "clips.csv", "audio/c1.wav,a;b,2,1,2.0", "audio/c1.wav,a;b,2,1,1e9"),
        ["clips.csv line 3", "'duration_s' must be in (0, 86400]"],
    ),
    "latin1_clips_csv": (
        lambda r: (r / "clips.csv").write_bytes(
            (r / "clips.csv").read_bytes().replace(b"a;b", "a;b\u00e9".encode("latin-1"), 1)
        ),
        ["clips.csv", "not UTF-8 text", "save it as UTF-8"],
    ),
    "non_utf8_events_tsv": (
        lambda r: (r / "events.tsv").write_bytes((r / "events.tsv").read_bytes() + b"\xff\xfe"),
        ["events.tsv", "not UTF-8 text"],
    ),
    "same_wav_twice": (
        lambda r: _edit(r, "clips.csv", "\naudio/c2.wav,", "\n./audio/c1.wav,"),
        ["clips.csv line 4", "'path' repeats", "./audio/c1.wav"],
    ),
    # issue 32: tracebacks before
    "clips_csv_is_a_directory": (
        lambda r: ((r / "clips.csv").unlink(), (r / "clips.csv").mkdir()),
        ["clips.csv", "is a directory, not a manifest file"],
    ),
    "clips_csv_is_a_fifo": (
        lambda r: ((r / "clips.csv").unlink(), os.mkfifo(r / "clips.csv")),
        ["clips.csv", "not a regular file"],
    ),
    "nul_byte_in_clips_csv": (
        lambda r: _edit(r, "clips.csv", "audio/c2.wav,", "audio/c2\0.wav,"),
        ["clips.csv line 4", "NUL byte"],
    ),
    "audio_path_symlink_loop": (
        lambda r: (
            (r / "audio" / "c2.wav").unlink(),
            (r / "audio" / "c2.wav").symlink_to(r / "audio" / "c2.wav"),
        ),
        ["clips.csv line 4", "'path'", "c2.wav"],
    ),
    "path_out_of_the_corpus": (
        lambda r: _edit(r, "clips.csv", "\naudio/c2.wav,", "\n../other/audio/c2.wav,"),
        ["clips.csv line 4", "leads outside the corpus directory"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_corpus_is_one_line_exit_2(case, make_corpus, capsys):
    root = make_corpus()
    edit, needles = BAD_INPUTS[case]
    edit(root)
    with pytest.raises(UserError):
        Corpus.load(root)
    assert main(["data", "info", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("sedsweep: error: ")
    for needle in needles:
        assert needle in err, (needle, err)


def test_missing_directory(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: corpus directory not found" in capsys.readouterr().err


def test_stored_fingerprint_survives_unround_values(make_corpus, tmp_path):
    """Values that don't print short (e.g. 220672/44100 s) must round-trip exactly."""
    corpus = Corpus.load(make_corpus())
    odd = 220672 / 44100
    clips = [
        type(c)(str(corpus.audio_path(c)), c.labels, c.fold, c.verified, odd, snr_db=1 / 3)
        for c in corpus.clips
    ]
    events = [
        type(e)(str(corpus.root / e.filename), e.onset / 3, e.offset, e.label)
        for e in corpus.events
    ]
    Corpus(tmp_path / "odd", "odd", corpus.classes, clips, events, corpus.sample_rate).write()
    again = Corpus.load(tmp_path / "odd")
    assert again.clips == clips and again.events == events
    stored = json.loads((tmp_path / "odd" / "corpus.json").read_text())["fingerprint"]
    assert stored == again.fingerprint()


def test_a_byte_order_mark_is_accepted(make_corpus):
    """Issue 15 F15: a UTF-8 BOM (Excel's CSV) used to read as 'missing column(s): path'."""
    root = make_corpus()
    clips = root / "clips.csv"
    clips.write_bytes(b"\xef\xbb\xbf" + clips.read_bytes())
    assert len(Corpus.load(root).clips) > 0


def test_a_declared_duration_the_audio_lacks_is_one_line_exit_2(make_corpus, capsys):
    """Issue 15 F16: `duration_s` was never compared with the audio (`data info` totals
    were the manifest's, and metrics allocate by the declared length)."""
    root = make_corpus()  # 2 s clips
    _edit(root, "clips.csv", "audio/c2.wav,a,1,1,2.0", "audio/c2.wav,a,1,1,1000")
    assert main(["data", "info", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"sedsweep: error: {root / 'clips.csv'}: audio/c2.wav: field 'duration_s' is 1000 s "
        "but the audio lasts 2.000 s"
    ), err
    _edit(root, "clips.csv", "audio/c2.wav,a,1,1,1000", "audio/c2.wav,a,1,1,2.01")
    assert main(["data", "info", str(root)]) == 0  # within the tolerance (1 %)
