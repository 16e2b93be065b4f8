"""Standard MIDI files (types 0 and 1) into timed engine events, and the notes a song needs.

Every channel is read; tempo changes from any track make one tempo map (type 1 files keep it
in the first track); SMPTE time division is supported. Times become engine frames at the
chosen sample rate, rounded to the nearest frame.

The bytes are parsed and validated by :mod:`sing_synth.smf`: reading is strict about structure
(a missing file, something that is not a MIDI file, a truncated or corrupt file, a header that
contradicts the file raise :class:`MidiFileError` with a one-line message), and lenient about
values (data bytes above 127 are clipped with a warning). ``lenient=True`` also salvages a
truncated or corrupt file: the complete messages are kept and a warning says what was lost.
A song longer than ``max_length`` is refused with its length before any frame is computed.
"""

from __future__ import annotations

import heapq
import logging
import os
import stat
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import events as ev
from . import smf
from .channels import DRUM_CHANNEL, Channel, InstrumentMap, note_keys
from .errors import MidiFileError

log = logging.getLogger(__name__)

DEFAULT_TEMPO = 500000  # microseconds per beat (120 bpm)
MAX_FILE_BYTES = 32 << 20  # about 10 million events: parsed, about 700 MB
MAX_SECONDS = 1e9  # about 32 years: no song is that long, the file is corrupt


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


def read(path: str | os.PathLike, rate: int = 44100, lenient: bool = False, max_length: float | None = None) -> Song:
    """Read a MIDI file into a :class:`Song` at ``rate`` frames per second.

    ``max_length``: the longest song accepted, in seconds (None: no limit); a longer one is
    refused with its length before any frame is computed.
    """

    path = Path(path)
    if rate <= 0:
        raise MidiFileError(f"sample rate {rate} is not positive; pass a rate such as 44100", "rate")
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):  # a device or a pipe could be read forever
                raise MidiFileError(f"{path} is not a regular file (a device, pipe or socket); give a .mid file")
            if info.st_size > MAX_FILE_BYTES:
                raise MidiFileError(
                    f"{path} is {info.st_size / 2**20:,.1f} MiB, more than the {MAX_FILE_BYTES >> 20} MiB a MIDI file "
                    "may be (millions of notes); split it, or check that it is a MIDI file"
                )
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise MidiFileError(f"{path}: no such file; check the path of the MIDI file") from None
    except IsADirectoryError:
        raise MidiFileError(f"{path} is a directory; give a .mid file") from None
    except OSError as exc:
        raise MidiFileError(f"{path}: cannot read ({exc.strerror}); check its permissions") from None
    try:
        mid = smf.parse(data, lenient)
    except MidiFileError as exc:
        raise MidiFileError(f"{path}: {exc}", exc.setting) from None
    song = _to_song(mid, path, rate, max_length)
    song.warnings[:0] = mid.warnings
    for w in song.warnings:
        log.warning("%s: %s", path.name, w)
    return song


def _to_song(mid: smf.MidiData, path: Path, rate: int, max_length: float | None) -> Song:
    # every track's messages at absolute ticks, merged in time order (stable: track, then position)
    merged = heapq.merge(*(_rows(t) for t in mid.tracks), key=lambda row: row[0])
    spt = mid.seconds_per_tick
    per_beat = mid.ticks_per_beat * 1e6
    tempo = DEFAULT_TEMPO
    tempo_changes = 0
    seconds = 0.0
    last_tick = 0
    out = array("q")
    for tick, kind, channel, a, b in merged:
        if tick != last_tick:
            seconds += (tick - last_tick) * (spt or tempo / per_beat)
            last_tick = tick
        if kind < 0:
            if kind == smf.TEMPO:
                tempo_changes += tempo != a
                tempo = a
            continue
        out.extend((int(round(seconds * rate)), kind, channel, a, b))
    _check_length(path, seconds, max_length)
    events = np.frombuffer(out, dtype=np.int64).reshape(-1, 5) if out else np.zeros((0, 5), np.int64)
    return Song(
        path=path,
        rate=rate,
        events=events,
        end=int(round(seconds * rate)),
        type=mid.format,
        tracks=len(mid.tracks),
        tempo_changes=tempo_changes,
    )


def _rows(track):
    """The ``smf.ROW``-tuples of a parsed track."""
    it = iter(track)
    return zip(it, it, it, it, it)


def _check_length(path: Path, seconds: float, max_length: float | None) -> None:
    """Refuse a song longer than ``max_length`` seconds, or too long for any render."""
    if max_length is not None and seconds > max_length:
        raise MidiFileError(
            f"{path.name} lasts {format_duration(seconds)} (to its last event), longer than the longest song "
            f"rendered ({format_duration(max_length)}); a corrupt delta time can do this: check the file, or raise "
            "the limit if the song is really this long",
            "max_length",
        )
    if seconds > MAX_SECONDS:
        raise MidiFileError(
            f"{path.name} lasts {format_duration(seconds)} (to its last event): no render can be that long; "
            "the file is corrupt, re-export it"
        )


def format_duration(seconds: float) -> str:
    """``1:02:03`` (hours, minutes, seconds), with days and years spelled out past them."""
    if seconds >= 86400 * 365:
        return f"{seconds / (86400 * 365.25):,.0f} years"
    if seconds >= 86400:
        return f"{seconds / 86400:,.1f} days"
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def needed_notes(song: Song, imap: InstrumentMap) -> list[tuple[int, int, int]]:
    """The distinct ``(instrument, pitch, vclass)`` notes the song plays, in order of first use."""
    seen: dict[tuple[int, int, int], None] = {}
    for _, keys in note_uses(song, imap):
        for key in keys:
            seen.setdefault(key)
    return list(seen)


def note_uses(song: Song, imap: InstrumentMap):
    """For each note-on that plays something: its row in ``song.events`` and the
    ``(instrument, pitch, vclass)`` notes it plays, in event order.

    Channel state (program, bank, soft pedal, morph position, resets) is followed through the
    song exactly as the engine follows it: the same :class:`channels.Channel`,
    :meth:`channels.InstrumentMap.playing` and :func:`channels.note_keys`.
    """
    chans = [Channel(c) for c in range(16)]
    for c in chans:
        c.instrument = imap.resolve(c.index, 0)
    for index, (_, kind, ch, a, b) in enumerate(_event_rows(song.events)):
        c = chans[ch]
        if kind == ev.NOTE_ON:
            inst = imap.playing(c)
            if inst >= 0:
                keys = note_keys(imap, inst, a, b, c.soft)
                if keys:
                    yield index, keys
        elif kind == ev.CONTROL:
            if a == ev.CC_RESET_CONTROLLERS:
                c.reset_controllers()
            elif imap.move(c, a, b) is None:
                c.set_controller(a, b)
        elif kind == ev.PROGRAM:
            c.program = a
            c.instrument = imap.resolve(ch, a, c.bank_msb, c.bank_lsb)
        elif kind == ev.RESET:
            for c in chans:
                c.reset_all()
                c.instrument = imap.resolve(c.index, 0)


def _event_rows(events: np.ndarray, chunk: int = 1 << 16):
    """The rows of ``events`` as lists, converted a chunk at a time (a whole song's lists could
    take gigabytes)."""
    for start in range(0, len(events), chunk):
        yield from events[start : start + chunk].tolist()


def drum_notes(song: Song) -> int:
    """Number of note-ons on the drum channel (channel 10)."""
    e = song.events
    return int(np.count_nonzero((e[:, 1] == ev.NOTE_ON) & (e[:, 2] == DRUM_CHANNEL)))
