"""Streaming audio file writers: WAV (16-bit, 24-bit PCM, 32-bit float) and FLAC (16/24-bit).

The container comes from the file extension (``.wav``, ``.flac``), the sample format from
``fmt`` (``pcm16``, ``pcm24``, ``float``). WAV is written here (a small RIFF writer whose sizes
are patched on close); FLAC needs the ``soundfile`` package (libsndfile). Samples are clipped to
[-1, 1] and rounded, without dither, so a render is bit-exact and repeatable.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import struct
from pathlib import Path

import numpy as np

from .errors import ConfigError, SingError

FORMATS = ("pcm16", "pcm24", "float")
CONTAINERS = {".wav": "wav", ".wave": "wav", ".flac": "flac"}


def container_of(path: str | os.PathLike) -> str:
    ext = Path(path).suffix.lower()
    if ext not in CONTAINERS:
        raise ConfigError(
            f"cannot write {Path(path).name!r}: unknown extension {ext or '(none)'}; use .wav or .flac", "output"
        )
    return CONTAINERS[ext]


def check_format(path: str | os.PathLike, fmt: str) -> str:
    """The container for ``path`` after checking that it can hold sample format ``fmt``."""
    container = container_of(path)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown sample format {fmt!r}: use one of {', '.join(FORMATS)}", "format")
    if container == "flac":
        if fmt == "float":
            raise ConfigError("FLAC has no float samples: use pcm16 or pcm24, or a .wav file", "format")
        try:
            import soundfile  # noqa: F401
        except (ImportError, OSError):
            raise ConfigError(
                "writing FLAC needs the soundfile package: pip install soundfile (or write .wav)"
            ) from None
    return container


def to_pcm_bytes(x: np.ndarray, fmt: str) -> bytes:
    """Interleaved little-endian sample bytes for float samples ``x`` (frames, channels)."""
    if fmt == "float":
        return np.ascontiguousarray(x, dtype="<f4").tobytes()
    x = np.clip(x, -1.0, 1.0)
    if fmt == "pcm16":
        return np.round(x * 32767.0).astype("<i2").tobytes()
    v = np.round(x.astype(np.float64) * 8388607.0).astype("<i4")
    return v.reshape(-1, 1).view(np.uint8)[:, :3].tobytes()


WAV_LIMIT = 0xFFFFFFFF  # the largest RIFF size a WAV header can state (4 GiB)


class WavWriter:
    """A RIFF/WAVE file written block by block; the header's sizes are filled in by :meth:`close`.

    A WAV file holds at most 4 GiB. When ``max_frames`` (the most the caller may write) could pass
    that, a 36-byte ``JUNK`` chunk is reserved after the header's ``WAVE``, and a file that does
    pass it becomes RF64 (EBU Tech 3306) on close: ``RF64``, the ``JUNK`` chunk turned into the
    ``ds64`` chunk holding the 64-bit sizes. Without the reservation, a write that would pass 4 GiB
    is refused with a :class:`~sing_synth.errors.SingError` before anything of it is written.
    """

    def __init__(self, f, rate: int, channels: int, fmt: str, max_frames: int | None = None) -> None:
        self.f, self.rate, self.channels, self.fmt = f, int(rate), int(channels), fmt
        self.width = {"pcm16": 2, "pcm24": 3, "float": 4}[fmt]
        self.frames = 0
        self.rf64 = False
        self.reserve = max_frames is not None and self._riff_size(int(max_frames), reserve=False) > WAV_LIMIT
        self._write_header()

    def _chunks(self) -> tuple[bytes, int]:
        """The fmt (and fact) chunks, and the size of the header before the samples."""
        tag = 3 if self.fmt == "float" else 1
        align = self.channels * self.width
        fmt_chunk = struct.pack("<HHIIHH", tag, self.channels, self.rate, self.rate * align, align, self.width * 8)
        if tag == 3:  # non-PCM: cbSize in fmt, and a fact chunk with the frame count
            fmt_chunk += struct.pack("<H", 0)
        head = 12 + 8 + len(fmt_chunk) + (12 if tag == 3 else 0) + 8
        return fmt_chunk, head

    def _riff_size(self, frames: int, reserve: bool | None = None) -> int:
        data = frames * self.channels * self.width
        reserve = self.reserve if reserve is None else reserve
        return self._chunks()[1] - 8 + (36 if reserve else 0) + data + (data & 1)

    def _write_header(self) -> None:
        fmt_chunk, _ = self._chunks()
        data_bytes = self.frames * self.channels * self.width
        riff = self._riff_size(self.frames)
        big = riff > WAV_LIMIT
        parts = [b"WAVE"]
        if self.reserve:  # the ds64 chunk of RF64, or JUNK reserving its place
            ds64 = struct.pack("<QQQI", riff, data_bytes, self.frames, 0)
            parts += [b"ds64" if big else b"JUNK", struct.pack("<I", len(ds64)), ds64 if big else bytes(len(ds64))]
        parts += [b"fmt ", struct.pack("<I", len(fmt_chunk)), fmt_chunk]
        if self.fmt == "float":
            parts += [b"fact", struct.pack("<II", 4, WAV_LIMIT if big else self.frames)]
        parts += [b"data", struct.pack("<I", WAV_LIMIT if big else data_bytes)]
        self.rf64 = big
        self.f.seek(0)
        self.f.write((b"RF64" if big else b"RIFF") + struct.pack("<I", WAV_LIMIT if big else riff) + b"".join(parts))

    def write(self, x: np.ndarray) -> None:
        if not self.reserve and self._riff_size(self.frames + len(x)) > WAV_LIMIT:
            seconds = self.frames / self.rate
            raise SingError(
                f"the WAV file would pass 4 GiB, the most a WAV file holds, after {seconds:,.0f} s of audio; "
                "write FLAC (.flac), or a lower rate or sample format",
                "output",
            )
        self.f.write(to_pcm_bytes(x, self.fmt))
        self.frames += len(x)

    def close(self) -> None:
        if (self.frames * self.channels * self.width) & 1:
            self.f.write(b"\0")  # RIFF chunks are word-aligned
        end = self.f.tell()
        self._write_header()
        self.f.seek(end)


class FlacWriter:
    """FLAC through libsndfile (the ``soundfile`` package)."""

    def __init__(self, f, rate: int, channels: int, fmt: str) -> None:
        import soundfile

        subtype = {"pcm16": "PCM_16", "pcm24": "PCM_24"}[fmt]
        self.sf = soundfile.SoundFile(
            f, "w", samplerate=int(rate), channels=int(channels), format="FLAC", subtype=subtype
        )
        self.frames = 0

    def write(self, x: np.ndarray) -> None:
        self.sf.write(np.clip(x, -1.0, 1.0))
        self.frames += len(x)

    def close(self) -> None:
        self.sf.close()


def open_writer(f, path: str | os.PathLike, rate: int, channels: int = 2, fmt: str = "pcm16",
                max_frames: int | None = None):
    """A writer for the open binary file ``f``, its container given by ``path``'s extension;
    ``max_frames``: the most that will be written, if known (a WAV file may then become RF64)."""
    if check_format(path, fmt) == "flac":
        return FlacWriter(f, rate, channels, fmt)
    return WavWriter(f, rate, channels, fmt, max_frames)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, rate: int, channels: int = 2, fmt: str = "pcm16",
                  max_frames: int | None = None):
    """A writer whose file appears at ``path`` only when the block ends without an error
    (``max_frames``: see :func:`open_writer`).

    The audio goes to a temporary file beside ``path``, which is fsynced and renamed over it;
    on any failure the temporary file is removed and ``path`` is left as it was.
    """
    out = Path(path)
    tmp = _temporary(out)  # named before it exists: a signal at any point leaves nothing behind
    try:
        with os.fdopen(os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600), "w+b") as f:
            writer = open_writer(f, out, rate, channels, fmt, max_frames)
            yield writer
            writer.close()
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(out))  # made 0600: give the file the usual permissions
        os.replace(tmp, out)
    except OSError as exc:
        _remove(tmp)
        raise SingError(f"cannot write {out}: {exc.strerror or exc}; check the disk space and permissions", "output") from None
    except BaseException:
        _remove(tmp)
        raise


def check_output(path: str | os.PathLike, fmt: str = "pcm16") -> str:
    """Refuse, before any work, an output that cannot be written: an unknown extension or sample
    format, a directory that does not exist, is not writable, or a directory in the file's place.
    Returns the container."""
    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"the output {out} is a directory; give a file name ending in .wav or .flac", "output")
    container = check_format(out, fmt)
    if not out.parent.is_dir():
        raise ConfigError(f"output directory {out.parent} does not exist; create it or choose another", "output")
    tmp = _temporary(out)  # what the atomic writer will do: a temporary file beside the output
    try:
        os.close(os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise ConfigError(f"cannot write in {out.parent} ({exc.strerror or exc}); choose another directory", "output") from None
    finally:
        _remove(tmp)
    return container


def _temporary(out: Path) -> Path:
    """A fresh name for a temporary file beside ``out`` (hidden, ending in ``.part``)."""
    return out.with_name(f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.part")


def write_audio(path: str | os.PathLike, audio: np.ndarray, rate: int, fmt: str = "pcm16") -> None:
    """Write a whole (frames,) or (frames, channels) array atomically."""
    audio = np.asarray(audio, dtype=np.float32)
    audio = audio[:, None] if audio.ndim == 1 else audio
    with atomic_writer(path, rate, audio.shape[1], fmt, max_frames=len(audio)) as writer:
        writer.write(audio)


def _file_mode(path: Path) -> int:
    """The mode of the file being replaced, or 0666 less the umask for a new one."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _remove(path: str | os.PathLike) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a WAV (or RF64) written by :class:`WavWriter` (PCM 16/24 or float): ``(frames x channels float32, rate)``."""
    data = Path(path).read_bytes()
    if data[:4] not in (b"RIFF", b"RF64") or data[8:12] != b"WAVE":
        raise ValueError(f"{path} is not a WAV file")
    pos, fmt, body, data_size = 12, None, None, None
    while pos + 8 <= len(data):
        name, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if name == b"data" and size == WAV_LIMIT and data_size is not None:
            size = data_size  # RF64: the size is in the ds64 chunk
        chunk = data[pos + 8 : pos + 8 + size]
        if name == b"ds64":
            data_size = struct.unpack("<Q", chunk[8:16])[0]
        if name == b"fmt ":
            fmt = struct.unpack("<HHIIHH", chunk[:16])
        elif name == b"data":
            body = chunk
        pos += 8 + size + (size & 1)
    if fmt is None or body is None:
        raise ValueError(f"{path}: missing fmt or data chunk")
    tag, channels, rate, _, _, bits = fmt
    if tag == 3:
        x = np.frombuffer(body, "<f4").astype(np.float32)
    elif bits == 16:
        x = np.frombuffer(body, "<i2").astype(np.float32) / 32767.0
    elif bits == 24:
        b = np.frombuffer(body, np.uint8).reshape(-1, 3)
        v = b[:, 0].astype(np.int32) | (b[:, 1].astype(np.int32) << 8) | (b[:, 2].astype(np.int32) << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / 8388607.0
    else:
        raise ValueError(f"{path}: unsupported WAV sample format (tag {tag}, {bits} bits)")
    return x.reshape(-1, channels), rate
