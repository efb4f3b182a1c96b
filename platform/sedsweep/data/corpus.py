"""The on-disk corpus format (clips.csv, events.tsv, corpus.json) and the in-memory Corpus."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sedsweep.errors import UserError
from sedsweep.fsio import atomic_file, unusable, write_json

CLIPS_FILE = "clips.csv"
EVENTS_FILE = "events.tsv"
META_FILE = "corpus.json"
REQUIRED_COLUMNS = ("path", "labels", "fold", "verified", "duration_s")
MAX_FOLD = 1_000  # folds are small integers; a huge one is a typo (and overflows int64)
MAX_DURATION_S = 86_400.0  # one clip of at most a day: frame metrics allocate per second
OPTIONAL_COLUMNS = ("snr_db", "strong")
LABEL_SEP = ";"
EVENTS_HEADER = ("filename", "onset", "offset", "event_label")
# An event may end this far past the clip's duration (rounding in source metadata).
DURATION_TOLERANCE_S = 0.05


@dataclass(frozen=True)
class Clip:
    """One recording: its path as written in the manifest, weak labels, fold and flags."""

    path: str
    labels: tuple[str, ...]
    fold: int
    verified: bool
    duration_s: float
    snr_db: float | None = None
    # its strong annotation is complete (events.tsv lists all its events); False for a clip
    # with weak labels only, left out of frame- and segment-level metrics
    strong: bool = True


@dataclass(frozen=True)
class Event:
    """One strong annotation in DCASE form: the clip's manifest path, onset, offset, label."""

    filename: str
    onset: float
    offset: float
    label: str


@dataclass
class Corpus:
    """A set of clips with weak labels, optional strong events, folds and verified flags."""

    root: Path
    name: str
    classes: list[str]
    clips: list[Clip]
    events: list[Event] | None = None
    sample_rate: int = 44100
    generator: dict[str, Any] = field(default_factory=dict)

    # -- reading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, directory: str | Path) -> Corpus:
        """Read and validate a corpus directory; any defect is a UserError naming file and field."""
        root = Path(directory)
        if not root.is_dir():
            raise UserError(unusable(root, "corpus directory", directory=True), where=root)
        meta = _read_meta(root / META_FILE)
        classes = meta["classes"]
        clips = _read_clips(root, root / CLIPS_FILE, set(classes))
        events = None
        if (root / EVENTS_FILE).exists():
            events = _read_events(root / EVENTS_FILE, clips, set(classes))
        return cls(
            root=root,
            name=meta["name"],
            classes=classes,
            clips=clips,
            events=events,
            sample_rate=meta["sample_rate"],
            generator=meta.get("generator", {}),
        )

    # -- writing ---------------------------------------------------------------------------
    def write(self, directory: str | Path | None = None) -> Path:
        """Write clips.csv, events.tsv (if any) and corpus.json into `directory` atomically."""
        root = Path(directory) if directory is not None else self.root
        root.mkdir(parents=True, exist_ok=True)
        with_snr = any(c.snr_db is not None for c in self.clips)
        with_strong = any(not c.strong for c in self.clips)  # the column only when it says more
        columns = list(REQUIRED_COLUMNS) + (["snr_db"] if with_snr else [])
        columns += ["strong"] if with_strong else []
        with atomic_file(root / CLIPS_FILE, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for c in self.clips:
                row = [
                    c.path,
                    LABEL_SEP.join(c.labels),
                    c.fold,
                    int(c.verified),
                    repr(float(c.duration_s)),
                ]
                if with_snr:
                    row.append("" if c.snr_db is None else repr(float(c.snr_db)))
                if with_strong:
                    row.append(int(c.strong))
                writer.writerow(row)
        if self.events is not None:
            with atomic_file(root / EVENTS_FILE, "w", newline="", encoding="utf-8") as handle:
                handle.write("\t".join(EVENTS_HEADER) + "\n")
                for e in self.events:
                    handle.write(
                        f"{e.filename}\t{float(e.onset)!r}\t{float(e.offset)!r}\t{e.label}\n"
                    )
        written = replace(self, root=root)
        write_json(
            root / META_FILE,
            {
                "name": self.name,
                "classes": self.classes,
                "sample_rate": self.sample_rate,
                "generator": self.generator,
                "fingerprint": written.fingerprint(),
            },
        )
        return root

    # -- access ----------------------------------------------------------------------------
    def audio_path(self, clip: Clip) -> Path:
        """Absolute path of a clip's audio (manifest paths are relative to the corpus root)."""
        p = Path(clip.path)
        return p if p.is_absolute() else self.root / p

    def check_audio(self) -> None:
        """Every clip's audio file lasts what its `duration_s` declares (`check_duration`),
        read from the file headers."""
        from sedsweep.data.audio import audio_info

        for clip in self.clips:
            frames, sr = audio_info(self.audio_path(clip))
            check_duration(clip, frames / sr, self.root / CLIPS_FILE)

    @property
    def has_strong(self) -> bool:
        """Whether the corpus carries strong (onset/offset) annotations."""
        return self.events is not None

    def strong_clips(self) -> np.ndarray | None:
        """Per clip, whether its strong annotation is complete (`Clip.strong`); None without
        events.tsv."""
        return np.array([c.strong for c in self.clips], dtype=bool) if self.has_strong else None

    @property
    def folds(self) -> list[int]:
        """The distinct fold numbers, sorted."""
        return sorted({c.fold for c in self.clips})

    def weak_labels(self) -> np.ndarray:
        """The weak-label matrix [n_clips, n_classes] (uint8) in class order."""
        index = {name: i for i, name in enumerate(self.classes)}
        y = np.zeros((len(self.clips), len(self.classes)), dtype=np.uint8)
        for row, clip in enumerate(self.clips):
            for label in clip.labels:
                y[row, index[label]] = 1
        return y

    def events_by_clip(self) -> list[list[Event]]:
        """Strong events per clip in clip order (empty lists when the corpus has none)."""
        by_name: dict[str, list[Event]] = {c.path: [] for c in self.clips}
        for e in self.events or []:
            by_name[e.filename].append(e)
        return [by_name[c.path] for c in self.clips]

    def indices(
        self, folds: Iterable[int] | None = None, verified: bool | None = None
    ) -> np.ndarray:
        """Indices of the clips in the given folds (all when None), optionally by verified flag."""
        wanted = None if folds is None else set(folds)
        return np.array(
            [
                i
                for i, c in enumerate(self.clips)
                if (wanted is None or c.fold in wanted)
                and (verified is None or c.verified == verified)
            ],
            dtype=np.int64,
        )

    def subset(self, indices: Sequence[int]) -> Corpus:
        """A corpus holding only the given clips (and their events); same root and classes."""
        clips = [self.clips[i] for i in indices]
        keep = {c.path for c in clips}
        events = None if self.events is None else [e for e in self.events if e.filename in keep]
        return replace(self, clips=clips, events=events)

    def split(self, folds: Iterable[int]) -> Corpus:
        """The sub-corpus of the given folds."""
        return self.subset(self.indices(folds))

    # -- identity --------------------------------------------------------------------------
    def fingerprint(self, content: bool = False) -> str:
        """Stable hash of manifest, events, classes, rate and audio sizes/mtimes (or contents)."""
        h = hashlib.sha256()
        header = {"classes": self.classes, "sample_rate": self.sample_rate}
        h.update(json.dumps(header, sort_keys=True).encode())
        for c in self.clips:
            fields = [c.path, c.labels, c.fold, c.verified, c.duration_s, c.snr_db]
            # a weak-only clip adds its flag: corpora that have none keep their fingerprints
            h.update(json.dumps(fields + ([] if c.strong else ["weak-only"])).encode())
            path = self.audio_path(c)
            if content:
                h.update(_file_digest(path))
            else:
                st = os.stat(path)
                h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        for e in self.events or []:
            h.update(f"{e.filename}\t{e.onset!r}\t{e.offset!r}\t{e.label}".encode())
        h.update(b"events" if self.events is not None else b"no-events")
        return h.hexdigest()[:24]

    def summary(self) -> dict[str, Any]:
        """Statistics for `sedsweep data info`: sizes, cardinality, per-class counts, folds."""
        y = self.weak_labels()
        durations = np.array([c.duration_s for c in self.clips], dtype=float)
        per_class = dict(zip(self.classes, (int(v) for v in y.sum(axis=0)), strict=True))
        card = y.sum(axis=1)
        events = self.events or []
        with_events = {e.filename for e in events}
        info: dict[str, Any] = {
            "name": self.name,
            "root": str(self.root),
            "sample_rate": self.sample_rate,
            "clips": len(self.clips),
            "classes": len(self.classes),
            "label_cardinality": float(card.mean()) if len(card) else 0.0,
            "cardinality_histogram": {
                str(k): int(v) for k, v in sorted(Counter(card.tolist()).items())
            },
            "negative_clips": int((card == 0).sum()),
            "per_class_counts": per_class,
            "duration_s": {
                "total": float(durations.sum()),
                "min": float(durations.min()) if len(durations) else 0.0,
                "mean": float(durations.mean()) if len(durations) else 0.0,
                "max": float(durations.max()) if len(durations) else 0.0,
            },
            "folds": {str(f): int(sum(c.fold == f for c in self.clips)) for f in self.folds},
            "verified_share": float(np.mean([c.verified for c in self.clips]))
            if self.clips
            else 0.0,
            "strong_events": len(events) if self.events is not None else None,
            "strong_coverage": (
                len(with_events) / len(self.clips)
                if self.events is not None and self.clips
                else None
            ),
            "strong_annotated_clips": (
                sum(c.strong for c in self.clips) if self.events is not None else None
            ),
        }
        snrs = sorted({c.snr_db for c in self.clips if c.snr_db is not None})
        if snrs:
            info["snr_db"] = snrs
        return info


# -- parsing helpers -------------------------------------------------------------------------
def check_duration(clip: Clip, seconds: float, where: Path) -> None:
    """A clip's audio must last its declared `duration_s`, within DURATION_TOLERANCE_S or 1 %
    (metrics and `data info` take durations from the manifest, features from the audio)."""
    if abs(seconds - clip.duration_s) > max(DURATION_TOLERANCE_S, 0.01 * clip.duration_s):
        raise UserError(
            f"field 'duration_s' is {clip.duration_s:g} s but the audio lasts {seconds:.3f} s",
            where=f"{where}: {clip.path}",
        )


def _read_meta(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise UserError("missing corpus metadata file", where=path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(
            f"not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})", where=path
        ) from None
    if not isinstance(meta, dict):
        raise UserError("expected a JSON object", where=path)
    for key in ("name", "classes", "sample_rate"):
        if key not in meta:
            raise UserError(f"missing field '{key}'", where=path)
    classes = meta["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
        raise UserError("field 'classes' must be a list of non-empty strings", where=path)
    padded = [c for c in classes if c != c.strip()]
    if padded:
        raise UserError(
            f"field 'classes': {padded[0]!r} has surrounding spaces (labels are matched "
            "exactly: write it without them)",
            where=path,
        )
    dupes = [c for c, n in Counter(classes).items() if n > 1]
    if dupes:
        raise UserError(f"field 'classes' repeats {dupes[0]!r}", where=path)
    bad = [c for c in classes if LABEL_SEP in c]
    if bad:
        raise UserError(f"field 'classes': class {bad[0]!r} contains '{LABEL_SEP}'", where=path)
    if not isinstance(meta["sample_rate"], int) or meta["sample_rate"] <= 0:
        raise UserError("field 'sample_rate' must be a positive integer", where=path)
    return meta


def parse_number(text: str, field_name: str, where: str) -> float:
    """A finite float from manifest text, or a UserError naming the field."""
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"field '{field_name}' is not a number: {text!r}", where=where) from None
    if not math.isfinite(value):
        raise UserError(f"field '{field_name}' is not finite: {text!r}", where=where)
    return value


def _text(path: Path) -> str:
    """A manifest's text: a regular file of UTF-8 without NUL bytes, a leading byte-order mark
    allowed; else a UserError naming the file (and the line of a NUL)."""
    try:
        if path.is_dir():
            raise UserError("is a directory, not a manifest file", where=path)
        if not path.is_file():  # a FIFO, a device: reading it could block forever
            raise UserError("not a regular file", where=path)
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8", where=path
        ) from None
    except OSError as exc:  # a symlink loop, no permission
        raise UserError(f"unreadable ({exc.strerror or type(exc).__name__})", where=path) from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise UserError("contains a NUL byte: not a text manifest", where=f"{path} line {line}")
    return text


def _read_clips(root: Path, path: Path, classes: set[str]) -> list[Clip]:
    if not path.exists() and not path.is_symlink():
        raise UserError("missing clip manifest", where=path)
    with io.StringIO(_text(path), newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise UserError("empty manifest (no header row)", where=path)
        header = [h.strip() for h in header]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise UserError(f"missing column(s): {', '.join(missing)}", where=path)
        extra = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
        if extra:
            raise UserError(f"unknown column(s): {', '.join(extra)}", where=path)
        col = {name: i for i, name in enumerate(header)}
        clips: list[Clip] = []
        seen: set[str] = set()
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not v.strip() for v in row):
                continue
            where = f"{path} line {lineno}"
            if len(row) != len(header):
                raise UserError(f"expected {len(header)} fields, found {len(row)}", where=where)
            clip_path = row[col["path"]].strip()
            if not clip_path:
                raise UserError("field 'path' is empty", where=where)
            audio = Path(clip_path) if Path(clip_path).is_absolute() else root / clip_path
            try:
                resolved = audio.resolve()
            except (OSError, RuntimeError):  # RuntimeError: Python 3.11's symlink loop
                raise UserError(
                    f"field 'path': {clip_path!r} is a symlink loop", where=where
                ) from None
            if not Path(clip_path).is_absolute() and not resolved.is_relative_to(root.resolve()):
                raise UserError(
                    f"field 'path': {clip_path!r} leads outside the corpus directory", where=where
                )
            same = os.path.normpath(audio)  # `audio/x.wav` and `./audio/x.wav` are one file
            if same in seen:
                raise UserError(f"field 'path' repeats {clip_path!r}", where=where)
            seen.add(same)
            if not audio.is_file():
                raise UserError(f"field 'path': {unusable(audio, 'audio file')}: {audio}",
                                where=where)  # fmt: skip
            labels = tuple(v.strip() for v in row[col["labels"]].split(LABEL_SEP) if v.strip())
            for label in labels:
                if label not in classes:
                    raise UserError(
                        f"field 'labels': {label!r} is not in the class list", where=where
                    )
            if len(set(labels)) != len(labels):
                raise UserError("field 'labels' repeats a label", where=where)
            fold_text = row[col["fold"]].strip()
            try:
                fold = int(fold_text)
            except ValueError:
                raise UserError(
                    f"field 'fold' is not an integer: {fold_text!r}", where=where
                ) from None
            if not 0 <= fold <= MAX_FOLD:
                raise UserError(f"field 'fold' must be 0 to {MAX_FOLD}, not {fold}", where=where)
            verified_text = row[col["verified"]].strip()
            if verified_text not in ("0", "1"):
                raise UserError(
                    f"field 'verified' must be 0 or 1, not {verified_text!r}", where=where
                )
            duration = parse_number(row[col["duration_s"]].strip(), "duration_s", where)
            if not 0 < duration <= MAX_DURATION_S:
                raise UserError(
                    f"field 'duration_s' must be in (0, {MAX_DURATION_S:g}] s (one clip), "
                    f"not {duration:g}",
                    where=where,
                )
            snr = None
            if "snr_db" in col and row[col["snr_db"]].strip():
                snr = parse_number(row[col["snr_db"]].strip(), "snr_db", where)
            strong = "1"
            if "strong" in col:
                strong = row[col["strong"]].strip()
                if strong not in ("0", "1"):
                    raise UserError(
                        f"field 'strong' must be 0 (weak labels only) or 1 (strong events "
                        f"complete), not {strong!r}",
                        where=where,
                    )
            clips.append(
                Clip(clip_path, labels, fold, verified_text == "1", duration, snr, strong == "1")
            )
    if not clips:
        raise UserError("manifest lists no clips", where=path)
    return clips


def _read_events(path: Path, clips: list[Clip], classes: set[str]) -> list[Event]:
    durations = {c.path: c.duration_s for c in clips}
    events: list[Event] = []
    with io.StringIO(_text(path), newline="") as handle:
        for lineno, line in enumerate(handle, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if not line.strip():
                continue
            where = f"{path} line {lineno}"
            if lineno == 1 and tuple(f.strip() for f in fields) == EVENTS_HEADER:
                continue
            if len(fields) != 4:
                raise UserError(
                    f"expected 4 tab-separated fields, found {len(fields)}", where=where
                )
            name, onset_text, offset_text, label = (f.strip() for f in fields)
            if name not in durations:
                raise UserError(f"field 'filename': {name!r} is not in {CLIPS_FILE}", where=where)
            onset = parse_number(onset_text, "onset", where)
            offset = parse_number(offset_text, "offset", where)
            if onset < 0 or onset >= offset:
                raise UserError(f"onset {onset:g} must be ≥ 0 and < offset {offset:g}", where=where)
            if offset > durations[name] + DURATION_TOLERANCE_S:
                raise UserError(
                    f"field 'offset' {offset:g} s is past the clip's end ({durations[name]:g} s)",
                    where=where,
                )
            if label not in classes:
                raise UserError(
                    f"field 'event_label': {label!r} is not in the class list", where=where
                )
            events.append(Event(name, onset, min(offset, durations[name]), label))
    return events


def _file_digest(path: Path) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.digest()
