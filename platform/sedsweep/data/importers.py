"""Importers of real datasets into sedsweep corpora, and the 2APAE remix of the user's own audio.

`import_nips4b`, `import_fsdkaggle2019` and `import_dcase` write only a manifest (clips.csv,
events.tsv, corpus.json) that references the original audio by absolute path; no audio is copied.
`remix_user` mixes the user's isolated events into the user's background recordings and writes
the mixtures as WAV files. Every output directory is built under a temporary name and renamed
into place only when complete; every defect of the input is a UserError naming file and row.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sedsweep.data.audio import audio_info, read_audio
from sedsweep.data.corpus import (
    CLIPS_FILE,
    DURATION_TOLERANCE_S,
    LABEL_SEP,
    META_FILE,
    Clip,
    Corpus,
    Event,
    parse_number,
)
from sedsweep.data.mixing import (
    DEFAULT_ONSETS_S,
    PlacedEvent,
    SnrCorpora,
    fit_length,
    mix_scene,
    snr_values,
    trim_event,
)
from sedsweep.errors import UserError
from sedsweep.fsio import atomic_dir, check_output_dir

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")

_NIPS4B_LABEL_FILES = (
    "NIPS4B_BIRD_CHALLENGE_TRAIN_LABELS/nips4b_birdchallenge_train_labels.csv",
    "nips4b_birdchallenge_train_labels.csv",
)
_NIPS4B_AUDIO_DIRS = ("NIPS4B_BIRD_CHALLENGE_TRAIN_TEST_WAV/train", "train")
_NIPS4BPLUS_DIR = "temporal_annotations_nips4b"
_NIPS4B_FILE = re.compile(r"^(nips4b_birds_trainfile(\d+))(?:\.wav)?$", re.IGNORECASE)
_NIPS4B_CLASS = re.compile(r"^[A-Z][a-z]+_[a-z]+$")  # species code + call type: 'Sylcan_song'
NIPS4BPLUS_IGNORED_TAGS = ("Unknown", "Human")  # NIPS4Bplus tags that are not NIPS4B classes

# per layout: set name -> (metadata file names tried in order, audio folder)
_FSD_LAYOUTS: dict[str, dict[str, tuple[tuple[str, ...], str]]] = {
    "zenodo": {
        "curated": (
            ("FSDKaggle2019.meta/train_curated_post_competition.csv",),
            "FSDKaggle2019.audio_train_curated",
        ),
        "noisy": (
            ("FSDKaggle2019.meta/train_noisy_post_competition.csv",),
            "FSDKaggle2019.audio_train_noisy",
        ),
        "test": (("FSDKaggle2019.meta/test_post_competition.csv",), "FSDKaggle2019.audio_test"),
    },
    "kaggle": {
        "curated": (("train_curated.csv",), "train_curated"),
        "noisy": (("train_noisy.csv",), "train_noisy"),
        "test": (("test_post_competition.csv", "test.csv"), "test"),
    },
}
_FSD_SETS = (("curated", 1, True), ("noisy", 1, False), ("test", 2, True))

_DCASE_STRONG = ("filename", "onset", "offset", "event_label")
_DCASE_WEAK = ("filename", "event_labels")
# DCASE metadata columns: each canonical name with the header names accepted for it (any case)
_DCASE_SYNONYMS = {
    "filename": ("filename", "path", "file"),
    "onset": ("onset",),
    "offset": ("offset",),
    "event_label": ("event_label", "label"),
    "event_labels": ("event_labels", "labels"),
    "fold": ("fold",),
}
_DCASE_ACCEPTED = (
    "filename|path|file, then onset, offset and event_label|label (strong) or "
    "event_labels|labels (weak), and optionally fold"
)
_MIN_GAP_S = 0.5  # gap kept before each generalised event slot


# -- NIPS4B -----------------------------------------------------------------------------------
def import_nips4b(
    src: Path,
    out: Path,
    *,
    overwrite: bool = False,
    train_count: int = 513,
    annotations_dir: Path | None = None,
    strict: bool = False,
    name: str | None = None,
) -> Corpus:
    """Import the NIPS4B 2013 bird training set (weak labels) and NIPS4Bplus strong events.

    Expected source layout (the challenge archives and the NIPS4Bplus zip, extracted in `src`)::

        src/
          NIPS4B_BIRD_CHALLENGE_TRAIN_LABELS/nips4b_birdchallenge_train_labels.csv
                                                   (or src/nips4b_birdchallenge_train_labels.csv)
          NIPS4B_BIRD_CHALLENGE_TRAIN_TEST_WAV/train/nips4b_birds_trainfile001.wav ... 687.wav
                                                   (or src/train/*.wav, or src/*.wav)
          temporal_annotations_nips4b/annotation_train001.csv ...   (optional, NIPS4Bplus)

    The labels CSV has some title rows, then a header row holding a 'Filename' column, then one
    row per recording: the file name and a 0/1 (or empty) cell per column. Class columns are the
    columns named by a species code such as 'Aegcau_call' in the header row or a title row above
    it, in file order; other columns ('Empty', duration, totals) are ignored. Recordings are
    sorted by number: the first `train_count` are fold 1, the rest fold 2 (the Morfi & Stowell
    split 513/174). All clips are verified. NIPS4Bplus files hold header-less rows
    `onset,duration,label`; an empty file means no events, tags 'Unknown' and 'Human' are
    skipped; an event running past its clip's end is cut there, one starting beyond it is
    dropped (both counted in the corpus's `generator`; `strict` refuses them). Recordings
    without an annotation file (13 in NIPS4Bplus) are marked weak-only (`Clip.strong` False:
    left out of frame-level metrics, not scored as clips without birds). `annotations_dir`
    overrides where they are looked up. The corpus is called `name` (default "nips4b").
    """
    root = _source_dir(src)
    check_output_dir(out, overwrite)
    corpus_name = _corpus_name(name, "nips4b")
    if train_count < 0:
        raise UserError(f"train_count must be ≥ 0, not {train_count}", where="--train-count")
    labels_file = _locate(root, _NIPS4B_LABEL_FILES, "NIPS4B labels file")
    classes, rows = _nips4b_labels(labels_file)
    audio_dir = next((root / d for d in _NIPS4B_AUDIO_DIRS if (root / d).is_dir()), root)
    if annotations_dir is not None and not annotations_dir.is_dir():
        raise UserError("NIPS4Bplus annotation directory not found", where=annotations_dir)
    plus = annotations_dir or (
        root / _NIPS4BPLUS_DIR if (root / _NIPS4BPLUS_DIR).is_dir() else None
    )
    manifest, known = _Manifest(strict=strict), set(classes)
    events: list[Event] | None = None if plus is None else []
    for k, (_, number, stem, labels, where) in enumerate(sorted(rows)):
        annotation = None if plus is None else plus / f"annotation_train{number}.csv"
        clip = manifest.add(
            audio_dir / f"{stem}.wav",
            labels,
            1 if k < train_count else 2,
            True,
            where,
            strong=annotation is None or annotation.is_file(),
        )
        if events is not None and annotation is not None:
            events += _nips4bplus_events(annotation, clip, known, manifest)
    generator = {
        "importer": "nips4b",
        "source": str(root),
        "labels_file": str(labels_file),
        "annotations": None if plus is None else str(plus.resolve()),
        "train_count": train_count,
    }
    return manifest.write(out, overwrite, corpus_name, classes, events, generator)


def _nips4b_labels(
    path: Path,
) -> tuple[list[str], list[tuple[int, str, str, tuple[str, ...], str]]]:
    rows = _read_rows(path, ",")
    header_at = next(
        (i for i, (_, f) in enumerate(rows) if any(c.lower() == "filename" for c in f)), None
    )
    if header_at is None:
        raise UserError("no header row with a 'Filename' column", where=path)
    file_col = [c.lower() for c in rows[header_at][1]].index("filename")
    titles = [f for _, f in reversed(rows[: header_at + 1])]  # header row first, then upwards
    columns: dict[int, str] = {}
    for j in range(max(len(f) for f in titles)):
        name = next((f[j] for f in titles if j < len(f) and _NIPS4B_CLASS.match(f[j])), None)
        if name is not None:
            if name in columns.values():
                raise UserError(f"species column {name!r} appears twice", where=path)
            columns[j] = name
    if not columns:
        raise UserError("no species columns (headers like 'Aegcau_call') found", where=path)
    entries = []
    for line, f in rows[header_at + 1 :]:
        match = _NIPS4B_FILE.match(f[file_col]) if file_col < len(f) else None
        if match is None:  # totals or notes below the table
            continue
        where = f"{path} line {line}"
        labels = tuple(
            name for j, name in columns.items() if _flag(f[j] if j < len(f) else "", name, where)
        )
        entries.append((int(match.group(2)), match.group(2), match.group(1), labels, where))
    if not entries:
        raise UserError("no rows naming a nips4b_birds_trainfileNNN.wav recording", where=path)
    return list(columns.values()), entries


def _flag(text: str, column: str, where: str) -> bool:
    value = parse_number(text, column, where) if text else 0.0
    if value not in (0.0, 1.0):
        raise UserError(f"column {column!r} must be 0, 1 or empty, not {text!r}", where=where)
    return value == 1.0


def _nips4bplus_events(
    path: Path, clip: Clip, classes: set[str], manifest: _Manifest
) -> list[Event]:
    if not path.is_file():
        return []
    events = []
    for line, f in _read_rows(path, ","):
        where = f"{path} line {line}"
        if len(f) != 3:
            raise UserError(
                f"expected 3 fields (onset, duration, label), found {len(f)}", where=where
            )
        onset, duration = parse_number(f[0], "onset", where), parse_number(f[1], "duration", where)
        if f[2] in NIPS4BPLUS_IGNORED_TAGS:
            continue
        if f[2] not in classes:
            raise UserError(f"label {f[2]!r} is not a class of the labels file", where=where)
        events += manifest.event(clip, onset, onset + duration, f[2], where)
    return events


# -- FSDKaggle2019 ----------------------------------------------------------------------------
def import_fsdkaggle2019(
    src: Path,
    out: Path,
    *,
    overwrite: bool = False,
    include_noisy: bool = True,
    name: str | None = None,
) -> Corpus:
    """Import FSDKaggle2019 (DCASE2019 task 2) from its Zenodo or its Kaggle layout.

    Expected source layouts::

        Zenodo (10.5281/zenodo.3612637)             Kaggle (freesound-audio-tagging-2019)
        src/                                        src/
          FSDKaggle2019.meta/                         train_curated.csv
            train_curated_post_competition.csv        train_noisy.csv
            train_noisy_post_competition.csv          train_curated/*.wav
            test_post_competition.csv                 train_noisy/*.wav
          FSDKaggle2019.audio_train_curated/*.wav     test/*.wav              (optional)
          FSDKaggle2019.audio_train_noisy/*.wav       test_post_competition.csv or test.csv
          FSDKaggle2019.audio_test/*.wav                             (optional, with labels)

    Each CSV has a header with `fname` and `labels` (comma-separated, quoted when several);
    other columns (freesound_id, license, usage) are ignored. Curated clips are verified,
    noisy ones are not, both in fold 1; test clips (only when a test CSV with a `labels` column
    exists: Kaggle's sample_submission.csv has none) are verified, in fold 2. The noisy set is
    required unless `include_noisy` is False. Classes are the sorted union of the labels.
    The corpus is called `name` (default "fsdkaggle2019").
    """
    root = _source_dir(src)
    check_output_dir(out, overwrite)
    corpus_name = _corpus_name(name, "fsdkaggle2019")
    layout = next(
        (name for name, sets in _FSD_LAYOUTS.items() if (root / sets["curated"][0][0]).is_file()),
        None,
    )
    if layout is None:
        names = [sets["curated"][0][0] for sets in _FSD_LAYOUTS.values()]
        raise UserError(
            f"FSDKaggle2019 metadata not found; looked for {' and '.join(names)}", where=root
        )
    manifest = _Manifest()
    used: list[str] = []
    for name, fold, verified in _FSD_SETS:
        if name == "noisy" and not include_noisy:
            continue
        meta_names, audio = _FSD_LAYOUTS[layout][name]
        meta = _locate(root, meta_names, f"FSDKaggle2019 {name} metadata", required=name != "test")
        if meta is None:
            continue
        header, body = _header(meta, _read_rows(meta, ","))
        if name == "test" and "labels" not in header:
            continue
        col = _columns(meta, header, ("fname", "labels"))
        for line, f in body:
            where = f"{meta} line {line}"
            labels = _split_labels(f[col["labels"]], where)
            manifest.add(root / audio / f[col["fname"]], labels, fold, verified, where)
        used.append(str(meta))
    classes = sorted({label for clip in manifest.clips for label in clip.labels})
    generator = {
        "importer": "fsdkaggle2019",
        "source": str(root),
        "layout": layout,
        "include_noisy": include_noisy,
        "metadata": used,
    }
    return manifest.write(out, overwrite, corpus_name, classes, None, generator)


# -- DCASE metadata ---------------------------------------------------------------------------
def import_dcase(
    src: Path,
    out: Path,
    *,
    meta: Sequence[Path] | None = None,
    audio_dir: Path | None = None,
    overwrite: bool = False,
    name: str | None = None,
    strict: bool = False,
) -> Corpus:
    """Import a folder of audio described by DCASE (task 4 style) metadata files.

    Expected source layout::

        src/
          any/folders/*.wav            audio, found by file name anywhere under src
                                       (or directly in `audio_dir` when given)
          train.tsv, validation.tsv    metadata (or in src/metadata/; or the files in `meta`)

    A metadata file is TSV or CSV (the delimiter is taken from its first line) with a header
    naming its columns, or without one when it has 4 columns (strong) or 2 (weak) and its first
    field is an audio file name. Header names are matched in any case, with the DCASE synonyms
    (`_DCASE_SYNONYMS`: filename|path|file, event_label|label, event_labels|labels); other
    columns are ignored. Strong rows `filename onset offset event_label` (a row with empty
    onset, offset and label lists a clip without events: a negative), weak rows
    `filename event_labels` (separated by ',', ';' or '|', one of them per file; empty: a
    negative). The files are joined by file name: a weak file's labels and a strong file's
    events for one clip make one clip. With a `fold` column (an integer ≥ 1, the same on
    every row of a clip) the folds are read from it, and a file without one takes the folds
    of the files that name its clips (a clip none of them names is an error); with no fold
    column anywhere, metadata file i (the `meta` order, else sorted by name) is fold i.
    Strong events also give the clip's weak labels; one running past its clip's end is cut
    there, one starting beyond it dropped (counted; `strict` refuses both).
    Clips are verified; classes are the sorted union of the labels. events.tsv is written when
    any file is strong: clips from weak files then carry no events and are marked weak-only
    (`Clip.strong` False), so frame-level metrics leave them out. The corpus is called
    `name`, by default the name of the `out` folder.
    """
    root = _source_dir(src)
    check_output_dir(out, overwrite)
    name = _corpus_name(name, Path(out).resolve().name)
    if meta:
        files = [Path(m) for m in meta]
    else:
        folders = [d for d in (root, root / "metadata") if d.is_dir()]
        files = sorted(
            (p for d in folders for p in d.iterdir() if p.suffix.lower() in (".tsv", ".csv")),
            key=lambda p: p.name,
        )
        if not files:
            raise UserError(
                "no metadata found; looked for *.tsv and *.csv in src and src/metadata", where=root
            )
    for path in files:
        if not path.is_file():
            raise UserError("metadata file not found", where=path)
    if audio_dir is not None and not audio_dir.is_dir():
        raise UserError("audio directory not found", where=audio_dir)
    find = _audio_finder(root, audio_dir)
    manifest = _Manifest(strict=strict)
    events: list[Event] = []
    tables = [(path, *_dcase_table(path)) for path in files]
    clips = _join_by_clip(tables)
    any_strong = any(strong for _, _, strong, _, _ in tables)
    for file, entry in clips.items():
        clip = manifest.add(
            find(file, entry.where),
            tuple(entry.labels),
            entry.fold,
            True,
            entry.where,
            strong=entry.strong or not any_strong,  # a corpus of weak files has no events.tsv
        )
        for onset, offset, label, w in entry.spans:
            events += manifest.event(clip, onset, offset, label, w)
    classes = sorted({label for clip in manifest.clips for label in clip.labels})
    generator = {
        "importer": "dcase",
        "source": str(root),
        "meta": [str(p.resolve()) for p in files],
        "audio_dir": None if audio_dir is None else str(audio_dir.resolve()),
        "label_separators": {p.name: sep for p, _, _, _, sep in tables if sep is not None},
    }
    return manifest.write(out, overwrite, name, classes, events if any_strong else None, generator)


@dataclass
class _Joined:
    """One clip as all metadata files describe it together."""

    labels: dict[str, None]  # ordered set: weak labels, then strong events' labels
    spans: _Spans
    where: str  # the first row naming it
    fold: int | None
    strong: bool  # a strong file names it: its events are complete


def _join_by_clip(tables: list[tuple[Path, dict, bool, bool, str | None]]) -> dict[str, _Joined]:
    """The clips of several metadata files joined by file name: a weak file's labels and a
    strong file's events for the same clip make one clip. Folds come from the fold columns of
    the files that have one (a clip's must agree); a clip that only files without one name
    then has no fold, an error naming it. When no file has a fold column, metadata file i is
    fold i (a clip takes the first file naming it)."""
    folded = any(has_folds for _, _, _, has_folds, _ in tables)
    joined: dict[str, _Joined] = {}
    for index, (_, table, strong, has_folds, _) in enumerate(tables, start=1):
        for file, (labels, spans, where, fold) in table.items():
            fold = fold if has_folds else (None if folded else index)
            entry = joined.setdefault(file, _Joined({}, [], where, fold, strong))
            if fold is not None and entry.fold is not None and fold != entry.fold:
                raise UserError(
                    f"fold {fold} differs from fold {entry.fold} of {file!r} at {entry.where}",
                    where=where,
                )
            entry.fold = entry.fold if entry.fold is not None else fold
            entry.labels.update(labels)
            entry.spans += spans
            entry.strong = entry.strong or strong
    for file, entry in joined.items():
        if entry.fold is None:
            raise UserError(
                f"{file!r} has no fold: its file has no fold column and no file with one names it",
                where=entry.where,
            )
    return joined


_Spans = list[tuple[float, float, str, str]]


def _dcase_table(
    path: Path,
) -> tuple[dict[str, tuple[dict[str, None], _Spans, str, int | None]], bool, bool, str | None]:
    """Rows grouped by file name: (ordered label set, events, first row, fold or None), whether
    the file is strong, whether it has a fold column, and the separator of a weak file's label
    lists (`LABEL_SEPARATORS`; the one its rows use, "," when none has two labels)."""
    rows = _read_rows(path)
    if not rows:
        raise UserError("metadata file is empty", where=path)
    first = rows[0][1]
    known = {n for names in _DCASE_SYNONYMS.values() for n in names}
    if any(c.lower() in known for c in first):
        header, body = _header(path, rows)
    elif len(first) in (4, 2) and Path(first[0]).suffix.lower() in AUDIO_SUFFIXES:
        header = list(_DCASE_STRONG if len(first) == 4 else _DCASE_WEAK)  # header-less
        body = _pad(path, len(header), rows)
    else:
        raise UserError(
            f"header not understood: found columns {', '.join(first)}; accepted (any case): "
            f"{_DCASE_ACCEPTED}",
            where=path,
        )
    col = _dcase_columns(path, header)
    strong = "onset" in col
    separator = (
        None if strong else _label_separator(path, [f[col["event_labels"]] for _, f in body])
    )
    table: dict[str, tuple[dict[str, None], _Spans, str, int | None]] = {}
    for line, f in body:
        where = f"{path} line {line}"
        fold = _fold(f[col["fold"]], where) if "fold" in col else None
        name = f[col["filename"]]
        labels, spans, _, first_fold = table.setdefault(name, ({}, [], where, fold))
        if fold != first_fold:
            raise UserError(
                f"fold {fold} differs from fold {first_fold} on an earlier row of {name!r}",
                where=where,
            )
        if separator is not None:
            labels.update(dict.fromkeys(_split_labels(f[col["event_labels"]], where, separator)))
            continue
        onset, offset, label = (f[col[k]] for k in _DCASE_STRONG[1:])
        if not (onset or offset or label):
            continue
        if not (onset and offset and label):
            raise UserError(
                "onset, offset and event_label must all be given or all be empty", where=where
            )
        labels[_label(label, where)] = None
        spans.append(
            (
                parse_number(onset, "onset", where),
                parse_number(offset, "offset", where),
                label,
                where,
            )
        )
    return table, strong, "fold" in col, separator


LABEL_SEPARATORS = (",", ";", "|")
"""What may separate the labels of a clip in a weak metadata file (one of them per file)."""


def _label_separator(path: Path, fields: list[str]) -> str:
    """The one of `LABEL_SEPARATORS` that a weak file's label fields use ("," when none holds
    two labels); fields that use two different ones are a UserError naming the file."""
    used = [sep for sep in LABEL_SEPARATORS if any(sep in field for field in fields)]
    if len(used) > 1:
        raise UserError(
            f"label lists use both {used[0]!r} and {used[1]!r}: use one separator per file",
            where=path,
        )
    return used[0] if used else ","


def _dcase_columns(path: Path, header: list[str]) -> dict[str, int]:
    """Canonical column name -> index, by `_DCASE_SYNONYMS`: filename and either onset, offset
    and event_label (strong) or event_labels (weak; a lone event_label|label column serves);
    fold when present. A header that gives neither lists the columns found and accepted."""
    col = {}
    for canonical, names in _DCASE_SYNONYMS.items():
        found = next((i for i, c in enumerate(header) if c in names), None)
        if found is not None:
            col[canonical] = found
    if "onset" in col or "offset" in col:
        needed: tuple[str, ...] = _DCASE_STRONG
    else:
        if "event_labels" not in col and "event_label" in col:
            col["event_labels"] = col.pop("event_label")
        needed = _DCASE_WEAK
    missing = [name for name in needed if name not in col]
    if missing:
        raise UserError(
            f"missing column(s) {', '.join(missing)}: found {', '.join(header)}; accepted "
            f"(any case): {_DCASE_ACCEPTED}",
            where=path,
        )
    return {k: v for k, v in col.items() if k in (*needed, "fold")}


def _fold(text: str, where: str) -> int:
    value = parse_number(text, "fold", where)
    if value != int(value) or value < 1:
        raise UserError(f"field 'fold' must be an integer ≥ 1, not {text!r}", where=where)
    return int(value)


def _corpus_name(name: str | None, default: str) -> str:
    """The corpus name given (stripped), else `default`; an empty one is refused."""
    chosen = default if name is None else name.strip()
    if not chosen:
        raise UserError("the corpus name must not be empty", where="--name")
    return chosen


def _audio_finder(root: Path, audio_dir: Path | None) -> Callable[[str, str], Path]:
    """Map a metadata file name to its audio: in `audio_dir`, else by base name under `root`."""
    if audio_dir is not None:
        return lambda name, where: audio_dir / name
    index: dict[str, list[Path]] = defaultdict(list)
    for path in root.rglob("*"):
        if path.is_file():
            index[path.name].append(path)

    def find(name: str, where: str) -> Path:
        hits = index.get(Path(name).name, [])
        if len(hits) > 1:
            raise UserError(
                f"audio file name {Path(name).name!r} is ambiguous: {hits[0]} and {hits[1]} "
                "(pass --audio-dir)",
                where=where,
            )
        return hits[0] if hits else root / name

    return find


# -- remix of the user's own events and backgrounds -------------------------------------------
def remix_user(
    events: Path,
    backgrounds: Path,
    out: Path,
    *,
    snr_db: Sequence[float],
    clips: int | None = None,
    layout: Literal["subdirs", "column"] = "subdirs",
    clip_s: float = 10.0,
    max_event_s: float = 2.0,
    events_per_clip: int = 3,
    folds: int = 4,
    sr: int = 32000,
    seed: int = 0,
    overwrite: bool = False,
) -> list[Corpus]:
    """Mix the user's isolated events into the user's backgrounds (the 2APAE procedure).

    `events` is a folder whose immediate sub-folders are class names holding audio files, or a
    sedsweep corpus (its folder or clips.csv) whose single-label clips are the events.
    `backgrounds` is a folder of audio files (searched recursively). Each output clip is a
    background cut (from a random start) or looped to `clip_s`, plus `events_per_clip` events
    of distinct classes, each trimmed of silence and cut to `max_event_s`, placed in
    non-overlapping slots (the 2APAE code's 0.5/3.0/5.5 s for three 2 s events in 10 s, else
    evenly spaced slots) and scaled to the SNR. Event files are split between the `folds`
    (clip i is in fold i % folds + 1 and draws only that fold's events), so no event recording
    appears in two folds. `clips` defaults to the number of event files // `events_per_clip`.
    The draws are the same for every SNR (paired corpora). Layouts: one SNR gives a corpus at
    `out`; several give `out/snr_{v:g}db/` ("subdirs") or one corpus with an snr_db column
    ("column"). Weak labels and exact strong events describe what was placed.
    """
    corpora = SnrCorpora(snr_values(snr_db), layout)
    for option, value in (("--clip-s", clip_s), ("--max-event-s", max_event_s), ("--sr", sr)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise UserError(f"must be a positive number, not {value!r}", where=option)
    for option, count in (("--events-per-clip", events_per_clip), ("--folds", folds)):
        if count < 1:
            raise UserError(f"must be ≥ 1, not {count}", where=option)
    by_class = _event_sources(Path(events))
    if len(by_class) < events_per_clip:
        raise UserError(
            f"{len(by_class)} event classes, fewer than the {events_per_clip} events per clip",
            where=events,
        )
    background_files = _audio_files(Path(backgrounds), "background")
    n = round(clip_s * sr)
    onsets = _event_onsets(events_per_clip, n, round(max_event_s * sr), sr)
    n_clips = sum(map(len, by_class.values())) // events_per_clip if clips is None else clips
    if n_clips < 1:
        raise UserError(f"the number of clips must be ≥ 1, not {n_clips}", where="--clips")
    rng = np.random.default_rng(seed)
    pools = _fold_pools(by_class, folds, rng)
    for k, pool in enumerate(pools, start=1):
        if len(pool) < events_per_clip:
            raise UserError(
                f"fold {k} gets event files of only {len(pool)} classes, fewer than "
                f"{events_per_clip}: use fewer folds or add event files",
                where="--folds",
            )
    classes = sorted(by_class)
    check_output_dir(out, overwrite)
    with atomic_dir(out, overwrite) as tmp:
        for i in range(n_clips):
            pool = pools[i % folds]
            chosen = rng.choice(sorted(pool), size=events_per_clip, replace=False)
            placed = [
                PlacedEvent(
                    trim_event(
                        read_audio(pool[c][rng.integers(len(pool[c]))], sr)[0], sr, max_event_s
                    ),
                    str(c),
                    onset,
                )
                for c, onset in zip(chosen, onsets, strict=True)
            ]
            scene, _ = read_audio(background_files[rng.integers(len(background_files))], sr)
            scene = fit_length(scene[rng.integers(max(scene.size - n, 0) + 1) :], n)
            for snr in corpora.snrs:
                mixture, strong = mix_scene(scene, sr, placed, snr)
                present = {label for _, _, label in strong}
                labels = tuple(c for c in classes if c in present)
                corpora.add(tmp, i, snr, mixture, sr, labels, i % folds + 1, strong)
        generator = {
            "importer": "remix_user",
            "events": str(Path(events).resolve()),
            "backgrounds": str(Path(backgrounds).resolve()),
            "snr_db": corpora.snrs,
            "layout": layout,
            "clips": n_clips,
            "events_per_clip": events_per_clip,
            "onsets_s": list(onsets),
            "clip_s": clip_s,
            "max_event_s": max_event_s,
            "folds": folds,
            "seed": seed,
        }
        corpora.write(tmp, "remix_user", classes, sr, lambda _: generator)
    return corpora.load(Path(out))


def _event_sources(events: Path) -> dict[str, list[Path]]:
    """Event files per class from class sub-folders, or from a corpus's single-label clips."""
    if events.is_file() and events.name == CLIPS_FILE:
        events = events.parent
    by_class: dict[str, list[Path]] = defaultdict(list)
    if events.is_dir() and ((events / META_FILE).exists() or (events / CLIPS_FILE).exists()):
        corpus = Corpus.load(events)
        for clip in corpus.clips:
            if len(clip.labels) == 1:
                by_class[clip.labels[0]].append(corpus.audio_path(clip))
    elif events.is_dir():
        for folder in sorted(events.iterdir()):
            if folder.is_dir() and not folder.name.startswith("."):
                if LABEL_SEP in folder.name:
                    raise UserError(
                        f"class folder names must not contain '{LABEL_SEP}'", where=folder
                    )
                by_class[folder.name] = _audio_files(folder, "event", required=False)
    else:
        raise UserError(
            "event source not found: expected class sub-folders or a corpus", where=events
        )
    return {label: files for label, files in by_class.items() if files}


def _audio_files(folder: Path, what: str, required: bool = True) -> list[Path]:
    if not folder.is_dir():
        raise UserError(f"{what} folder not found", where=folder)
    files = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
    )
    if required and not files:
        raise UserError(f"no {what} audio files ({', '.join(AUDIO_SUFFIXES)}) found", where=folder)
    return files


def _event_onsets(count: int, n: int, length: int, sr: int) -> tuple[float, ...]:
    """Onsets (s) of `count` slots of `length` samples in `n`: the 2APAE ones when they fit."""
    starts = [round(t * sr) for t in DEFAULT_ONSETS_S]
    fits = all(b - a >= length for a, b in itertools.pairwise(starts))
    if count != len(starts) or not fits or starts[-1] + length > n:
        gap = round(_MIN_GAP_S * sr)
        slot = n // count
        if length + gap > slot:
            raise UserError(
                f"{count} events of up to {length / sr:g} s do not fit in {n / sr:g} s "
                f"with {_MIN_GAP_S:g} s gaps",
                where="--events-per-clip",
            )
        starts = [k * slot + gap for k in range(count)]
    return tuple(s / sr for s in starts)


def _fold_pools(
    by_class: dict[str, list[Path]], folds: int, rng: np.random.Generator
) -> list[dict[str, list[Path]]]:
    """Deal each class's (shuffled) event files over the folds, continuing across classes."""
    pools: list[dict[str, list[Path]]] = [{} for _ in range(folds)]
    turn = 0
    for label in sorted(by_class):
        files = by_class[label]
        for j in rng.permutation(len(files)):
            pools[turn % folds].setdefault(label, []).append(files[j])
            turn += 1
    return pools


# -- shared steps -----------------------------------------------------------------------------
@dataclass
class _Manifest:
    """Clips gathered by an importer, with the sample rates seen, written as one corpus."""

    clips: list[Clip] = field(default_factory=list)
    rates: Counter[int] = field(default_factory=Counter)
    seen: set[str] = field(default_factory=set)
    strict: bool = False  # an event past its clip's end is an error, not clipped or dropped
    fixed: Counter[str] = field(default_factory=Counter)  # events clipped / dropped

    def event(self, clip: Clip, onset: float, offset: float, label: str, where: str) -> list[Event]:
        """The strong event on `clip` (checked: 0 ≤ onset < offset), as a list: cut at the clip's
        end when it runs past it (by more than DURATION_TOLERANCE_S: counted as clipped),
        dropped when it starts beyond it (counted); with `strict`, either is a UserError."""
        if onset < 0 or onset >= offset:
            raise UserError(f"onset {onset:g} must be ≥ 0 and < offset {offset:g}", where=where)
        past = onset >= clip.duration_s or offset > clip.duration_s + DURATION_TOLERANCE_S
        if past and self.strict:
            raise UserError(
                f"event {onset:g}–{offset:g} s runs past the clip's end ({clip.duration_s:g} s; "
                "without --strict it is cut there, or dropped when it starts beyond it)",
                where=where,
            )
        if onset >= clip.duration_s:
            self.fixed["dropped"] += 1
            return []
        self.fixed["clipped"] += past
        return [Event(clip.path, onset, min(offset, clip.duration_s), label)]

    def add(
        self,
        audio: Path,
        labels: tuple[str, ...],
        fold: int,
        verified: bool,
        where: str,
        strong: bool = True,
    ) -> Clip:
        """Probe `audio` (existence, duration, rate) and append its clip (`strong`: whether its
        strong events are complete, when the corpus has strong events)."""
        if not audio.is_file():
            raise UserError(f"audio file not found: {audio}", where=where)
        path = str(audio.resolve())
        if path in self.seen:
            raise UserError(f"audio file listed twice: {audio}", where=where)
        self.seen.add(path)
        frames, rate = audio_info(audio)
        self.rates[rate] += 1
        self.clips.append(Clip(path, labels, fold, verified, frames / rate, strong=strong))
        return self.clips[-1]

    def write(
        self,
        out: Path,
        overwrite: bool,
        name: str,
        classes: list[str],
        events: list[Event] | None,
        generator: dict[str, Any],
    ) -> Corpus:
        """Write the manifest atomically into `out` and return the corpus as loaded from it."""
        if not self.clips:
            raise UserError("the metadata lists no clips", where=generator["source"])
        rate = self.rates.most_common(1)[0][0]
        if events is not None:  # what the import changed, for the report and the record
            generator = {**generator, "events_clipped": self.fixed["clipped"]}
            generator["events_dropped"] = self.fixed["dropped"]
        with atomic_dir(out, overwrite) as tmp:
            Corpus(tmp, name, classes, self.clips, events, rate, generator).write()
        return Corpus.load(out)


def _source_dir(src: Path) -> Path:
    if not Path(src).is_dir():
        raise UserError("source directory not found", where=src)
    return Path(src).resolve()


def _locate(root: Path, names: Sequence[str], what: str, required: bool = True) -> Path | None:
    """The first of `names` (relative to `root`) that is a file; a UserError when none is."""
    found = next((root / name for name in names if (root / name).is_file()), None)
    if found is None and required:
        raise UserError(f"{what} not found; looked for {', '.join(names)}", where=root)
    return found


def _read_rows(path: Path, delimiter: str | None = None) -> list[tuple[int, list[str]]]:
    """Non-blank rows as (line number, stripped fields); the delimiter is sniffed when None."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if delimiter is None:
        first = next((line for line in text.splitlines() if line.strip()), "")
        delimiter = "\t" if "\t" in first else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        return [
            (reader.line_num, [v.strip() for v in f]) for f in reader if any(v.strip() for v in f)
        ]
    except csv.Error as exc:
        raise UserError(f"malformed line {reader.line_num} ({exc})", where=path) from None


def _header(
    path: Path, rows: list[tuple[int, list[str]]]
) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Split off the header row (lower-cased) and pad/check the other rows to its width."""
    if not rows:
        raise UserError("file is empty (no header row)", where=path)
    header = [c.lower() for c in rows[0][1]]
    return header, _pad(path, len(header), rows[1:])


def _pad(path: Path, width: int, rows: list[tuple[int, list[str]]]) -> list[tuple[int, list[str]]]:
    """Rows padded with empty fields to `width`; a row with more fields is a UserError."""
    for line, f in rows:
        if len(f) > width:
            raise UserError(f"expected {width} fields, found {len(f)}", where=f"{path} line {line}")
    return [(line, f + [""] * (width - len(f))) for line, f in rows]


def _columns(path: Path, header: list[str], names: Sequence[str]) -> dict[str, int]:
    missing = [name for name in names if name not in header]
    if missing:
        raise UserError(f"missing column(s): {', '.join(missing)}", where=path)
    return {name: header.index(name) for name in names}


def _split_labels(text: str, where: str, separator: str = ",") -> tuple[str, ...]:
    return tuple(dict.fromkeys(_label(v, where) for v in text.split(separator) if v.strip()))


def _label(text: str, where: str) -> str:
    if LABEL_SEP in text:
        raise UserError(f"label {text.strip()!r} contains '{LABEL_SEP}'", where=where)
    return text.strip()
