"""Audio file writers: WAV and FLAC sample formats, exact levels, clipping, atomic replacement."""

import os
import wave
from pathlib import Path

import numpy as np
import pytest

from sing_synth import audio_file
from sing_synth.audio_file import atomic_writer, check_format, check_output, read_wav, to_pcm_bytes, write_audio
from sing_synth.errors import ConfigError, SingError

RATE = 22050


def stereo(frames: int = 1001) -> np.ndarray:
    t = np.arange(frames) / RATE
    return np.stack([0.9 * np.sin(2 * np.pi * 440 * t), 0.5 * np.cos(2 * np.pi * 330 * t)], axis=1).astype(np.float32)


@pytest.mark.parametrize("fmt, step", [("pcm16", 1 / 32767), ("pcm24", 1 / 8388607), ("float", 0.0)])
def test_wav_round_trip_within_one_step(tmp_path, fmt, step):
    x = stereo()
    path = tmp_path / f"{fmt}.wav"
    write_audio(path, x, RATE, fmt)
    y, rate = read_wav(path)
    assert rate == RATE and y.shape == x.shape
    assert np.max(np.abs(y - x)) <= step / 2 + 1e-9  # rounded, not truncated
    size = os.path.getsize(path)
    data = x.size * {"pcm16": 2, "pcm24": 3, "float": 4}[fmt]
    assert size == (44 if fmt != "float" else 58) + data + (data & 1)  # RIFF chunks are word-aligned
    if fmt != "float":
        with wave.open(str(path)) as w:  # another reader agrees on the header
            assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, RATE, len(x))


def test_pcm_bytes_clip_and_are_little_endian():
    x = np.array([[-1.5, 2.0], [0.5, -0.5]], np.float32)
    assert np.frombuffer(to_pcm_bytes(x, "pcm16"), "<i2").tolist() == [-32767, 32767, 16384, -16384]
    b = to_pcm_bytes(np.array([[1.0], [-1.0]]), "pcm24")
    assert b == (8388607).to_bytes(3, "little") + (-8388607 & 0xFFFFFF).to_bytes(3, "little")


def test_flac(tmp_path):
    soundfile = pytest.importorskip("soundfile")
    x = stereo()
    write_audio(tmp_path / "a.flac", x, RATE, "pcm24")
    y, rate = soundfile.read(tmp_path / "a.flac", dtype="float32")
    assert rate == RATE and np.max(np.abs(y - x)) < 2e-7


def test_formats_and_containers_are_checked():
    assert check_format("a.WAV", "pcm16") == "wav" and check_format("a.flac", "pcm16") == "flac"
    with pytest.raises(ConfigError, match="unknown extension .mp3") as info:
        check_format("a.mp3", "pcm16")
    assert info.value.setting == "output"
    with pytest.raises(ConfigError, match="FLAC has no float samples") as info:
        check_format("a.flac", "float")
    assert info.value.setting == "format"
    with pytest.raises(ConfigError, match="unknown sample format 'pcm8'"):
        check_format("a.wav", "pcm8")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.wav"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    with pytest.raises(RuntimeError), atomic_writer(path, RATE) as writer:
        writer.write(stereo(10))
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [path]
    write_audio(path, stereo(10), RATE)
    assert read_wav(path)[0].shape == (10, 2) and path.stat().st_mode & 0o777 == 0o640  # the mode is kept


def test_disk_errors_become_one_line_sing_errors(tmp_path, monkeypatch):
    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(audio_file.os, "fsync", full)
    with pytest.raises(SingError, match="cannot write .*No space left on device; check the disk space"):
        write_audio(tmp_path / "x.wav", stereo(10), RATE)
    assert list(tmp_path.iterdir()) == []


def unwritable_directory(tmp_path):
    """A directory no file can be created in: read-only for a user; /sys for root, whom a mode bit
    does not stop."""
    if os.geteuid() == 0:
        return Path("/sys")
    d = tmp_path / "read-only"
    d.mkdir(mode=0o555)
    return d


def test_an_unwritable_output_is_refused_up_front_and_by_the_writer(tmp_path):
    """The temporary file is created inside the error handling: a read-only directory is a one-line
    error (once an OSError traceback), and check_output says so before any work."""
    ro = unwritable_directory(tmp_path)
    with pytest.raises(SingError, match=f"cannot write {ro}/x.wav: .*check the disk space and permissions"):
        write_audio(ro / "x.wav", stereo(10), RATE)
    with pytest.raises(ConfigError, match=f"cannot write in {ro} .*choose another directory") as info:
        check_output(ro / "x.wav")
    assert info.value.setting == "output"
    with pytest.raises(ConfigError, match="output directory /nonexistent does not exist"):
        check_output("/nonexistent/n.wav")
    with pytest.raises(ConfigError, match="is a directory"):
        check_output(tmp_path)  # a directory where the file should go
    (tmp_path / "d.wav").mkdir()
    with pytest.raises(ConfigError, match="d.wav is a directory"):
        check_output(tmp_path / "d.wav")
    assert check_output(tmp_path / "fine.flac") == "flac" and not list(tmp_path.glob(".*"))


def test_a_wav_past_4_gib_becomes_rf64_or_is_refused_before_it_passes(tmp_path, monkeypatch):
    """A render once died in the WAV header writer (struct.error) after writing over 4 GiB. The limit
    is lowered here to 4 kB: the same code paths, without writing gigabytes."""
    soundfile = pytest.importorskip("soundfile")
    monkeypatch.setattr(audio_file, "WAV_LIMIT", 4000)
    x = stereo(1500)  # 6000 bytes of pcm16
    write_audio(tmp_path / "big.wav", x, RATE)  # the writer knows the length: it reserves the ds64 chunk
    data = (tmp_path / "big.wav").read_bytes()
    assert data[:4] == b"RF64" and data[12:16] == b"ds64" and len(data) == 80 + 6000
    y, rate = read_wav(tmp_path / "big.wav")
    assert rate == RATE and np.max(np.abs(y - x)) <= 1 / 32767
    monkeypatch.setattr(audio_file, "WAV_LIMIT", 0xFFFFFFFF)  # libsndfile's own limit: a real RF64 file
    z, rate = soundfile.read(tmp_path / "big.wav", dtype="int16")
    assert rate == RATE and np.array_equal(np.round(y * 32767), z)
    monkeypatch.setattr(audio_file, "WAV_LIMIT", 4000)
    write_audio(tmp_path / "small.wav", x[:500], RATE, "pcm16")
    assert (tmp_path / "small.wav").read_bytes()[:4] == b"RIFF"  # 2000 bytes: a plain WAV, 44-byte header
    assert os.path.getsize(tmp_path / "small.wav") == 44 + 2000
    with pytest.raises(SingError, match="would pass 4 GiB, the most a WAV file holds, after 0 s .*write FLAC"):
        with atomic_writer(tmp_path / "unknown.wav", RATE) as writer:  # no length given: refused, not broken
            writer.write(x[:900])
            writer.write(x[900:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.wav", "small.wav"]
