"""Standard MIDI files (types 0 and 1) into timed engine events, and the notes a song needs.

Every channel is read; tempo changes from any track make one tempo map (type 1 files keep it
in the first track); SMPTE time division is supported. Times become engine frames at the
chosen sample rate, rounded to the nearest frame.

Reading is strict about structure (a missing file, something that is not a MIDI file, a
truncated or corrupt file raise :class:`MidiFileError` with a one-line message), and lenient
about values (data bytes above 127 are clipped with a warning). ``lenient=True`` also salvages
a truncated file: the complete messages are kept and a warning says what was lost.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import events as ev
from .channels import DRUM_CHANNEL, InstrumentMap, note_keys
from .errors import MidiFileError

log = logging.getLogger(__name__)
_PARSE_ERRORS = (EOFError, OSError, ValueError, KeyError, IndexError, TypeError, struct.error)

DEFAULT_TEMPO = 500000  # microseconds per beat (120 bpm)
GM_SYSTEM_ON = (0x7E, 0x7F, 0x09, 0x01)  # sysex data of "General MIDI System On": a reset


@dataclass
class Song:
    """A MIDI file as engine events: ``events`` rows are (frame, kind, channel, a, b), int64, in order."""

    path: Path
    rate: int
    events: np.ndarray
    end: int  # frame of the last message (end of track included)
    type: int = 1
    tracks: int = 1
    tempo_changes: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.end / self.rate

    def channels(self) -> set[int]:
        """Channels with at least one note."""
        notes = self.events[self.events[:, 1] == ev.NOTE_ON]
        return {int(c) for c in np.unique(notes[:, 2])}

    def note_count(self) -> int:
        return int(np.count_nonzero(self.events[:, 1] == ev.NOTE_ON))


def read(path: str | os.PathLike, rate: int = 44100, lenient: bool = False) -> Song:
    """Read a MIDI file into a :class:`Song` at ``rate`` frames per second."""

    path = Path(path)
    if rate <= 0:
        raise MidiFileError(f"sample rate {rate} is not positive; pass a rate such as 44100", "rate")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MidiFileError(f"{path}: no such file; check the path of the MIDI file") from None
    except IsADirectoryError:
        raise MidiFileError(f"{path} is a directory; give a .mid file") from None
    except OSError as exc:
        raise MidiFileError(f"{path}: cannot read ({exc.strerror}); check its permissions") from None
    if data[:4] != b"MThd":
        raise MidiFileError(f"{path} is not a MIDI file (no MThd header); give a Standard MIDI File (.mid)")
    warnings: list[str] = []
    try:
        try:
            mid = _parse(data, clip=False)
        except OSError as exc:
            if "data byte must be in range" not in str(exc):
                raise
            mid = _parse(data, clip=True)
            warnings.append("data bytes above 127 were clipped to 127 (the file is slightly corrupt)")
    except _PARSE_ERRORS as exc:
        if not lenient:
            what = "truncated" if isinstance(exc, EOFError) else f"corrupt ({exc})"
            raise MidiFileError(
                f"{path}: the MIDI file is {what}; repair or re-export it (or read what can be read, leniently)",
                "lenient",
            ) from None
        mid, lost = _salvage(path, data)
        warnings.append(f"the file is truncated or corrupt: {lost}; rendering what could be read")
    if mid.type == 2:
        raise MidiFileError(f"{path} is a type 2 MIDI file (independent patterns); convert it to type 1 or 0")
    song = _to_song(mid, path, rate)
    song.warnings[:0] = warnings
    for w in song.warnings:
        log.warning("%s: %s", path.name, w)
    return song


def _parse(data: bytes, clip: bool):
    import mido

    return mido.MidiFile(file=io.BytesIO(data), clip=clip)


def _salvage(path: Path, data: bytes):
    """Rebuild a truncated file from its complete chunks and messages: ``(MidiFile, what was lost)``."""

    if len(data) < 14:
        raise MidiFileError(f"{path}: the MIDI header is truncated; nothing can be read")
    fmt, declared, division = struct.unpack(">HHH", data[8:14])
    pos = 8 + struct.unpack(">I", data[4:8])[0]
    tracks: list[bytes] = []
    cut = False
    while pos + 8 <= len(data):
        name, size = data[pos : pos + 4], struct.unpack(">I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        pos += 8 + size
        if name != b"MTrk":
            continue
        if len(body) < size:
            cut = True
        tracks.append(body)
    if not tracks:
        raise MidiFileError(f"{path}: the MIDI file has no complete track; nothing can be read")
    # trim the last track back to its last complete message (parsing that track alone)
    last = tracks[-1]
    for trim in range(0, min(len(last), 4096) + 1):
        body = last[: len(last) - trim]
        try:
            _parse(_assemble(fmt, division, [body]), clip=True)
        except _PARSE_ERRORS:
            continue
        try:
            mid = _parse(_assemble(fmt, division, tracks[:-1] + [body]), clip=True)
        except _PARSE_ERRORS:
            break
        lost = f"{trim} bytes of the last track" if trim else "the end of the file"
        missing = max(0, declared - len(tracks))
        if missing:
            lost += f" and {missing} of {declared} tracks"
        if not cut and not trim and not missing:
            lost = "a chunk was malformed"
        return mid, lost
    raise MidiFileError(f"{path}: the MIDI file is corrupt beyond repair; re-export it")


def _assemble(fmt: int, division: int, tracks: list[bytes]) -> bytes:
    out = [b"MThd", struct.pack(">IHHH", 6, fmt, len(tracks), division)]
    for body in tracks:
        out += [b"MTrk", struct.pack(">I", len(body)), body]
    return b"".join(out)


def _to_song(mid, path: Path, rate: int) -> Song:
    division = mid.ticks_per_beat & 0xFFFF  # mido reads it as a signed short
    smpte = bool(division & 0x8000)
    seconds_per_tick = 0.0
    if smpte:  # SMPTE: frames per second (as a negative byte) x ticks per frame
        fps = 256 - (division >> 8)
        fps = 29.97 if fps == 29 else float(fps)
        seconds_per_tick = 1.0 / (fps * ((division & 0xFF) or 1))
    elif division == 0:
        raise MidiFileError(f"{path}: the MIDI header gives {division} ticks per beat; the file is corrupt")
    # every track's messages at absolute ticks, merged in time order (stable: track, then position)
    timed = []
    for track_index, track in enumerate(mid.tracks):
        tick = 0
        for position, msg in enumerate(track):
            tick += msg.time
            timed.append((tick, track_index, position, msg))
    timed.sort(key=lambda item: item[:3])
    tempo = DEFAULT_TEMPO
    tempo_changes = 0
    seconds = 0.0
    last_tick = 0
    rows: list[tuple[int, int, int, int, int]] = []
    end = 0
    for tick, _, _, msg in timed:
        if tick != last_tick:
            seconds += (tick - last_tick) * (seconds_per_tick if smpte else tempo / (division * 1e6))
            last_tick = tick
        frame = int(round(seconds * rate))
        end = max(end, frame)
        if msg.is_meta:
            if msg.type == "set_tempo" and msg.tempo > 0:
                tempo_changes += tempo != msg.tempo
                tempo = msg.tempo
            continue
        if msg.type == "sysex":
            if tuple(msg.data) == GM_SYSTEM_ON:
                rows.append((frame, ev.RESET, 0, 0, 0))
            continue
        event = ev.from_mido(msg)
        if event is not None:
            rows.append((frame, event.kind, event.channel, event.a, event.b))
    events = np.array(rows, dtype=np.int64).reshape(-1, 5)
    return Song(
        path=path,
        rate=rate,
        events=events,
        end=end,
        type=mid.type,
        tracks=len(mid.tracks),
        tempo_changes=tempo_changes,
    )


def needed_notes(song: Song, imap: InstrumentMap) -> list[tuple[int, int, int]]:
    """The distinct ``(instrument, pitch, vclass)`` notes the song plays, in order of first use.

    Channel state (program, bank, soft pedal, resets) is followed through the song exactly as
    the engine follows it, with the same :func:`channels.note_keys`.
    """
    program = [0] * 16
    msb = [0] * 16
    lsb = [0] * 16
    soft = [False] * 16
    inst = [imap.resolve(c, 0) for c in range(16)]
    seen: dict[tuple[int, int, int], None] = {}
    for _, kind, ch, a, b in song.events.tolist():
        if kind == ev.NOTE_ON:
            if inst[ch] >= 0:
                for key in note_keys(imap, inst[ch], a, b, soft[ch]):
                    seen.setdefault(key)
        elif kind == ev.CONTROL:
            if a == ev.CC_BANK_MSB:
                msb[ch] = b
            elif a == ev.CC_BANK_LSB:
                lsb[ch] = b
            elif a == ev.CC_SOFT:
                soft[ch] = b >= 64
            elif a == ev.CC_RESET_CONTROLLERS:
                soft[ch] = False
        elif kind == ev.PROGRAM:
            program[ch] = a
            inst[ch] = imap.resolve(ch, a, msb[ch], lsb[ch])
        elif kind == ev.RESET:
            program, msb, lsb, soft = [0] * 16, [0] * 16, [0] * 16, [False] * 16
            inst = [imap.resolve(c, 0) for c in range(16)]
    return list(seen)


def drum_notes(song: Song) -> int:
    """Number of note-ons on the drum channel (channel 10)."""
    e = song.events
    return int(np.count_nonzero((e[:, 1] == ev.NOTE_ON) & (e[:, 2] == DRUM_CHANNEL)))
