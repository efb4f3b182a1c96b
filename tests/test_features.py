"""Log-mel presets, frame alignment, normalisation statistics and the feature cache."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from sedsweep import features as F
from sedsweep.cli import main
from sedsweep.config import parse_overrides
from sedsweep.data.corpus import Corpus
from sedsweep.errors import UserError
from sedsweep.features import (
    PRESETS,
    build_features,
    extract_clip,
    frame_index_map,
    resolve_params,
)

from .conftest import tone


def test_presets_follow_the_papers():
    m, h, d = PRESETS["morfi2018"], PRESETS["he2020"], PRESETS["deshmukh2020"]
    assert (m.sr, m.n_mels, m.win_length, m.hop_length, m.window) == (
        44100,
        40,
        1024,
        512,
        "hamming",
    )
    # He et al.: 40 ms frames, 50 % overlap, 80 bands, silence trimmed, 2000 frames
    assert h.win_length / h.sr == pytest.approx(0.040)
    assert h.hop_length * 2 == h.win_length
    assert (h.n_mels, h.trim_silence, h.fixed_frames) == (80, True, 2000)
    assert (d.sr, d.n_mels, d.n_fft, d.hop_length, d.fmin, d.fmax) == (
        32000,
        64,
        2048,
        1024,
        50,
        16000,
    )
    assert (d.window, d.log, d.log_offset) == ("hamming", "log", 1e-8)


def test_deshmukh_framing_gives_311_frames_per_10s(tmp_path):
    path = tmp_path / "ten.wav"
    sf.write(path, np.random.default_rng(0).normal(0, 0.1, 320000).astype(np.float32), 32000)
    feats, times = extract_clip(path, PRESETS["deshmukh2020"])
    assert feats.shape == (311, 64)
    assert times[0] == pytest.approx(1024 / 32000)  # first window centre: n_fft / 2


def test_log_mel_matches_an_independent_numpy_computation(tmp_path):
    sr, n_fft, hop = 16000, 512, 256
    y = np.random.default_rng(1).normal(0, 0.1, sr).astype(np.float32)
    sf.write(tmp_path / "x.wav", y, sr, subtype="FLOAT")
    params = resolve_params(
        "morfi2018",
        {"sr": sr, "n_fft": n_fft, "win_length": n_fft, "hop_length": hop, "n_mels": 24},
    )
    feats, _ = extract_clip(tmp_path / "x.wav", params)
    # by hand: reflect-free zero-padded centred frames, Hamming window, |FFT|², mel filterbank
    padded = np.pad(y.astype(np.float64), n_fft // 2)
    n_frames = 1 + len(y) // hop
    window = np.hamming(n_fft + 1)[:-1]  # periodic Hamming, as scipy.signal.get_window uses
    frames = np.stack([padded[t * hop : t * hop + n_fft] * window for t in range(n_frames)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    fb = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=24)
    expected = np.log(power @ fb.T + 1e-8)
    assert feats.shape == expected.shape
    np.testing.assert_allclose(feats, expected, atol=2e-3)


def test_tone_lands_in_its_mel_band(tmp_path):
    sf.write(tmp_path / "t.wav", tone(3000, 1.0), 16000)
    params = resolve_params("morfi2018", {"sr": 16000})
    feats, _ = extract_clip(tmp_path / "t.wav", params)
    edges = librosa.mel_frequencies(n_mels=params.n_mels + 2, fmax=8000)
    peak = int(np.argmax(feats.mean(axis=0)))
    assert edges[peak] <= 3000 <= edges[peak + 2]


def test_fixed_frames_repeat_and_downsample():
    np.testing.assert_array_equal(frame_index_map(3, 7), [0, 1, 2, 0, 1, 2, 0])
    idx = frame_index_map(10, 4)
    np.testing.assert_array_equal(idx, [0, 3, 6, 9])


def test_he_preset_trims_silence_and_keeps_times(tmp_path):
    sr = 16000
    y = np.zeros(3 * sr, dtype=np.float32)
    y[sr : 2 * sr] = tone(1000, 1.0, sr)  # 1 s of silence, 1 s tone, 1 s silence
    sf.write(tmp_path / "s.wav", y, sr)
    params = resolve_params(
        "he2020", {"sr": sr, "win_length": 640, "hop_length": 320, "n_fft": 1024}
    )
    feats, times = extract_clip(tmp_path / "s.wav", params)
    assert feats.shape == (2000, 80)
    # trimmed: every frame lies within (about) the tone, never in the leading silence
    assert times.min() >= 0.9 and times.max() <= 2.1


def test_overrides_and_their_errors():
    assert parse_overrides(["n_mels=40", "fmax=null", "window=none"]) == {
        "n_mels": 40,
        "fmax": None,
        "window": "none",
    }
    assert resolve_params("morfi2018", {"n_mels": 20}).n_mels == 20
    with pytest.raises(UserError, match="--preset: unknown preset 'foo'"):
        resolve_params("foo")
    with pytest.raises(UserError, match="unknown feature field 'hop'"):
        resolve_params("morfi2018", {"hop": 3})
    with pytest.raises(UserError, match="'window'"):
        resolve_params("morfi2018", {"window": "kaiser"})
    with pytest.raises(UserError, match="win_length"):
        resolve_params("morfi2018", {"win_length": 4096})
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["n_mels"])


def test_feature_set_targets_and_normalisation(make_corpus):
    corpus = Corpus.load(make_corpus(n=6))
    params = resolve_params(
        "morfi2018", {"sr": 16000, "n_fft": 512, "win_length": 512, "hop_length": 256}
    )
    fs = build_features(corpus, params, progress=False)
    assert len(fs) == 6 and fs.n_mels == 40
    np.testing.assert_array_equal(fs.weak, corpus.weak_labels())
    np.testing.assert_array_equal(fs.folds, [1, 2, 1, 2, 1, 2])
    # strong targets: class a (index 0) active exactly where the frame centre is in [0.5, 1.0)
    t = fs.times(1)
    y = fs.strong_targets(1)
    np.testing.assert_array_equal(y[:, 0], ((t >= 0.5) & (t < 1.0)).astype(np.uint8))
    np.testing.assert_array_equal(y[:, 1], ((t >= 1.2) & (t < 1.6)).astype(np.uint8))
    assert fs.strong_targets(0).sum() == 0
    # the tone raises the 1 kHz band inside the event relative to outside
    band = int(np.argmin(np.abs(librosa.mel_frequencies(n_mels=42, fmax=8000)[1:-1] - 1000)))
    x = fs.clip(1)
    assert x[y[:, 0] == 1, band].mean() > x[y[:, 0] == 0, band].mean() + 3
    # normalisation statistics from training clips only
    train = fs.indices([1])
    mean, std = fs.norm_stats(train)
    frames = np.concatenate([fs.clip(i) for i in train]).astype(np.float64)
    np.testing.assert_allclose(mean, frames.mean(axis=0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(std, frames.std(axis=0), rtol=1e-4, atol=1e-4)
    all_mean, _ = fs.norm_stats(fs.indices())
    assert not np.allclose(all_mean, mean)


def _params():
    return resolve_params(
        "morfi2018", {"sr": 16000, "n_fft": 512, "win_length": 512, "hop_length": 256}
    )


def test_cache_hit_reuses_identical_arrays(make_corpus, tmp_path):
    corpus = Corpus.load(make_corpus())
    first = build_features(corpus, _params(), tmp_path / "c", progress=False)
    second = build_features(Corpus.load(corpus.root), _params(), tmp_path / "c", progress=False)
    assert not first.cache_hit and second.cache_hit
    assert first.key == second.key
    np.testing.assert_array_equal(first.data, second.data)
    np.testing.assert_array_equal(first.frame_times, second.frame_times)
    assert [p.name for p in (tmp_path / "c").iterdir()] == [first.key]  # no temp dirs left


def test_cache_key_tracks_params_and_corpus(make_corpus, tmp_path):
    root = make_corpus()
    a = build_features(Corpus.load(root), _params(), tmp_path, progress=False)
    b = build_features(
        Corpus.load(root), _params().model_copy(update={"n_mels": 20}), tmp_path, progress=False
    )
    assert a.key != b.key and b.n_mels == 20
    text = (root / "clips.csv").read_text().replace("audio/c2.wav,a,", "audio/c2.wav,a;b,")
    (root / "clips.csv").write_text(text)
    c = build_features(Corpus.load(root), _params(), tmp_path, progress=False)
    assert c.key != a.key and not c.cache_hit


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_entry_json", "empty_dir"])
def test_damaged_cache_entry_is_rebuilt(make_corpus, tmp_path, damage, caplog):
    corpus = Corpus.load(make_corpus())
    good = build_features(corpus, _params(), tmp_path, progress=False)
    expected = np.array(good.data)  # good.data maps the file damaged below
    del good.data
    entry = good.cache_path
    data = entry / F.DATA_FILE
    if damage == "truncate":
        data.write_bytes(data.read_bytes()[:-100])
    elif damage == "flip":
        raw = bytearray(data.read_bytes())
        raw[-7] ^= 0xFF
        data.write_bytes(bytes(raw))
    elif damage == "no_entry_json":
        (entry / "entry.json").unlink()
    else:
        for p in entry.iterdir():
            p.unlink()
    with caplog.at_level(logging.WARNING, logger="sedsweep.features"):
        again = build_features(corpus, _params(), tmp_path, progress=False)
    assert not again.cache_hit
    assert "damaged" in caplog.text
    np.testing.assert_array_equal(again.data, expected)
    assert build_features(corpus, _params(), tmp_path, progress=False).cache_hit


def test_parallel_extraction_equals_serial(make_corpus, tmp_path, monkeypatch):
    corpus = Corpus.load(make_corpus(n=8))
    serial = build_features(corpus, _params(), tmp_path / "s", jobs=1, progress=False)
    monkeypatch.setattr(F, "MIN_AUDIO_S_FOR_PROCESSES", 1.0)
    parallel = build_features(corpus, _params(), tmp_path / "p", jobs=2, progress=False)
    np.testing.assert_array_equal(serial.data, parallel.data)
    np.testing.assert_array_equal(serial.offsets, parallel.offsets)


@pytest.mark.parametrize("defect", ["corrupt", "empty"])
def test_bad_wav_is_one_line_exit_2_and_caches_nothing(make_corpus, tmp_path, capsys, defect):
    root = make_corpus()
    wav = root / "audio" / "c2.wav"
    if defect == "corrupt":
        wav.write_bytes(b"RIFF\x00\x00garbage" * 10)
    else:
        sf.write(wav, np.zeros(0, dtype=np.float32), 16000)
    cache = tmp_path / "cache"
    code = main(
        ["features", str(root), "--preset", "morfi2018", "--cache", str(cache), "--set", "sr=16000"]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "c2.wav" in err, err
    assert ("zero length" in err) if defect == "empty" else ("unreadable" in err)
    assert not cache.exists() or not any(cache.iterdir())


def test_features_cli_second_call_is_a_cache_hit(make_corpus, tmp_path, capsys):
    root = make_corpus()
    args = [
        "features",
        str(root),
        "--preset",
        "deshmukh2020",
        "--set",
        "sr=16000",
        "--set",
        "fmax=8000",
    ]
    args += ["--cache", str(tmp_path / "c"), "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert (first["cache_hit"], second["cache_hit"]) == (False, True)
    assert first["key"] == second["key"] and second["clips"] == 6
    assert Path(second["cache_path"]).is_dir()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--preset", "bogus"], "--preset: unknown preset 'bogus'"),
        (["--set", "n_mels=-1"], "--set: feature field 'n_mels'"),
        (["--set", "colour=red"], "--set: unknown feature field 'colour'"),
        (["--set", "fmax=99999"], "fmax"),
    ],
)
def test_features_cli_rejects_bad_settings(make_corpus, capsys, args, needle):
    assert main(["features", str(make_corpus()), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err


@pytest.mark.parametrize(
    ("samples", "declared", "needle"),
    [
        (1, 1 / 16000, "the audio lasts 1 samples at 16000 Hz, shorter than one analysis window"),
        (32000, 1000.0, "field 'duration_s' is 1000 s but the audio lasts 2.000 s"),
    ],
)  # fmt: skip
def test_audio_shorter_than_a_window_or_than_declared_is_refused(
    make_corpus, tmp_path, samples, declared, needle
):
    """Issue 15 F16: a 1-sample clip, or one whose audio is not as long as `duration_s`
    says, is a one-line error naming the manifest and the clip, not features of nonsense."""
    root = make_corpus()
    sf.write(root / "audio" / "c0.wav", np.zeros(samples, np.float32), 16000)  # no events
    clips = root / "clips.csv"
    clips.write_text(clips.read_text().replace("audio/c0.wav,,1,1,2.0",
                                               f"audio/c0.wav,,1,1,{declared!r}"))  # fmt: skip
    corpus = Corpus.load(root)
    params = F.PRESETS["deshmukh2020"].model_copy(update={"sr": 16000, "fmax": 8000.0})
    with pytest.raises(UserError) as err:
        F.build_features(corpus, params, tmp_path / "cache", jobs=1)
    assert str(err.value).startswith(f"{clips}: audio/c0.wav: "), err.value
    assert needle in str(err.value), err.value


def test_the_cache_stores_each_clips_log_mels_in_the_chosen_precision(make_corpus, tmp_path):
    """float16 (the default) is the extracted float32 rounded to nearest; float32 is exact."""
    corpus = Corpus.load(make_corpus(n=3))
    half = build_features(corpus, _params(), tmp_path, progress=False)
    full = build_features(
        corpus, _params().model_copy(update={"dtype": "float32"}), tmp_path, progress=False
    )
    assert half.key != full.key and half.mapped and full.mapped
    assert (half.data.dtype, full.data.dtype) == (np.float16, np.float32)
    assert isinstance(half.data, np.memmap) and not half.data.flags.writeable
    for i, clip in enumerate(corpus.clips):
        reference, _ = extract_clip(corpus.audio_path(clip), _params())
        np.testing.assert_array_equal(full.clip(i), reference)
        np.testing.assert_array_equal(half.clip(i), reference.astype(np.float16))
        # float16 keeps 11 significant bits: relative error at most 2^-11
        err = np.abs(half.clip(i).astype(np.float64) - reference) / np.abs(reference)
        assert err.max() <= 2.0**-11


def test_a_mapped_feature_set_travels_by_reference(make_corpus, tmp_path):
    import pickle

    corpus = Corpus.load(make_corpus())
    fs = build_features(corpus, _params(), tmp_path / "cache", progress=False)
    by_ref, by_value = pickle.dumps(fs), pickle.dumps(fs.in_memory())
    assert len(by_ref) < fs.data.nbytes / 4 < fs.data.nbytes < len(by_value)
    back = pickle.loads(by_ref)
    assert back.mapped and isinstance(back.data, np.memmap)
    copied = pickle.loads(by_value)
    assert not copied.mapped and not isinstance(copied.data, np.memmap)
    for other in (back, copied):
        np.testing.assert_array_equal(other.data, fs.data)
        np.testing.assert_array_equal(other.frame_times, fs.frame_times)
        np.testing.assert_array_equal(other.offsets, fs.offsets)
        assert other.clip_ids == fs.clip_ids and other.key == fs.key
    # a node that does not see the cache: one line naming the entry and what to do
    fs.cache_path.rename(tmp_path / "elsewhere")
    with pytest.raises(UserError) as err:
        pickle.loads(by_ref)
    assert str(fs.cache_path) in str(err.value) and "--workdir" in str(err.value)
    assert len(str(err.value).splitlines()) == 1
