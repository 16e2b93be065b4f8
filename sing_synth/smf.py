"""Standard MIDI Files from bytes: the header, the track chunks and their messages, validated.

:func:`parse` reads what a render needs (channel messages as :mod:`events` values, tempo
changes, the GM, GM2, GS and XG resets) and checks every byte of the structure on the way; meta
events it does not use (key and time signatures, names, lyrics...) are skipped unread, so an
impossible key signature cannot stop a song. Every size is checked against the chunk that
holds it: a message never reads past the end of its track.

The header is checked: format 0, 1 or 2 (sizes are unsigned: 0xFFFF is 65535, never -1),
the number of tracks against the track chunks found, and the time division (ticks per beat
above 0, or an SMPTE rate of 24, 25, 29.97 or 30 frames per second with ticks per frame above
0). A time division that cannot be read is always refused: the song's timing is unknown.

Strict reading (the default) refuses a truncated or corrupt file with a one-line
:class:`~sing_synth.errors.MidiFileError`; ``lenient=True`` salvages it and says what was lost
in ``warnings``: each track keeps its messages up to its first damaged byte, a chunk that
cannot be a chunk is skipped to the next ``MTrk`` marker, an unknown format is read as
format 1. Both modes clip data bytes above 127 to 127 with a warning (a slightly corrupt file
that still makes sense).
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass, field

from . import events as ev
from .errors import MidiFileError

TEMPO = -1  # the kind of a tempo change in a parsed track (a: microseconds per beat)
END = -2  # the kind of a track's last row: the time its last message was read (its end of track)
SMPTE_RATES = {24: 24.0, 25: 25.0, 29: 29.97, 30: 30.0}  # frames per second (29: drop-frame)
ROW = 5  # a parsed message: tick, kind, channel, a, b (kinds of ``events``, and TEMPO)

_CHANNEL_DATA = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
_SYSTEM_DATA = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0, 0xF8: 0, 0xFA: 0, 0xFB: 0, 0xFC: 0, 0xFE: 0}  # skipped
_LENIENTLY = "repair or re-export it, or read what can be read, leniently"


@dataclass
class MidiData:
    """A parsed file: its header's facts and, per track, its messages as flat ``ROW``-tuples."""

    format: int
    declared_tracks: int
    ticks_per_beat: int  # 0 for SMPTE time
    seconds_per_tick: float  # SMPTE time; 0.0 for tempo-based time
    tracks: list[array] = field(default_factory=list)  # flat int64 rows, ROW values per message
    warnings: list[str] = field(default_factory=list)


class _Damage(Exception):
    """Where a track stops making sense: what is wrong, at the byte where its message starts."""

    def __init__(self, what: str, at: int) -> None:
        super().__init__(what)
        self.at = at


def parse(data: bytes, lenient: bool = False) -> MidiData:
    """Parse a whole Standard MIDI File (see the module docstring for what is checked)."""
    warnings: list[str] = []
    track_follows = data[14:18] == b"MTrk"  # a header of 6 bytes, and a track after it
    if data[:4] != b"MThd":
        if not (track_follows and data[4:8] == b"\0\0\0\x06"):
            raise MidiFileError("not a MIDI file (no MThd header); give a Standard MIDI File (.mid)")
        if not lenient:
            raise MidiFileError(f"the MIDI header's MThd marker reads {data[:4]!r}: the file is corrupt; {_LENIENTLY}",
                                "lenient")
        warnings.append(f"the header's MThd marker reads {data[:4]!r}: read as a MIDI file")
    if len(data) < 14:
        raise MidiFileError(f"the MIDI header is truncated ({len(data)} of 14 bytes); nothing can be read")
    (header_size,) = struct.unpack(">I", data[4:8])
    fmt, declared, division = struct.unpack(">HHH", data[8:14])  # unsigned, as the standard says
    if header_size != 6 and track_follows and data[8 + header_size : 12 + header_size] != b"MTrk":
        if not lenient:  # a size mangled: the header is 6 bytes, a track follows them
            raise MidiFileError(
                f"the MIDI header chunk claims {header_size} bytes, but a track follows its 6; the file is corrupt; "
                f"{_LENIENTLY}",
                "lenient",
            )
        warnings.append(f"the header chunk claims {header_size} bytes instead of 6: read as 6")
        header_size = 6
    elif header_size < 6:
        raise MidiFileError(f"the MIDI header chunk is {header_size} bytes, less than its 6; the file is corrupt")
    if fmt == 2:
        raise MidiFileError("a type 2 MIDI file (independent patterns); convert it to type 1 or 0")
    if fmt > 2:
        if not lenient:
            raise MidiFileError(
                f"the MIDI header gives format {fmt}, not 0, 1 or 2: the file is corrupt; {_LENIENTLY} (as format 1)",
                "lenient",
            )
        warnings.append(f"the header gives format {fmt}, not 0, 1 or 2: read as format 1")
        fmt = 1
    ticks_per_beat, seconds_per_tick = _division(division)
    pos = 8 + header_size
    tracks: list[array] = []
    while pos + 8 <= len(data):
        name = data[pos : pos + 4]
        (size,) = struct.unpack(">I", data[pos + 4 : pos + 8])
        start, end = pos + 8, pos + 8 + size
        if name != b"MTrk" and not (name.isascii() and name.isalnum() and end <= len(data)):
            # not a chunk: an MTrk marker mangled, or a size that runs past the file
            what = f"bytes {pos}-{pos + 3} should start a chunk but hold {name!r}"
            if not lenient:
                raise MidiFileError(f"the MIDI file is corrupt ({what}); {_LENIENTLY}", "lenient")
            found = data.find(b"MTrk", pos + 1)
            if found >= 0:
                warnings.append(f"{what}: {found - pos} bytes were skipped to the next track")
                pos = found
                continue
            if len(tracks) >= declared:
                warnings.append(f"{what}: the last {len(data) - pos} bytes were skipped")
                break
            warnings.append(f"{what}: the rest of the file is read as a track")  # a track is still due
            name, end = b"MTrk", len(data)
            size = end - start
        pos = end
        if name != b"MTrk":
            continue  # a chunk of another kind: skipped, as the standard says
        body = data[start:end]
        number = len(tracks) + 1
        rows = array("q")
        tracks.append(rows)
        clipped, damage = _read_track(body, rows)
        if clipped:
            warnings.append(
                f"track {number}: {clipped} data bytes above 127 were clipped to 127 (the file is slightly corrupt)"
            )
        if damage is None and len(body) == size:
            continue
        kind = "truncated" if len(body) < size else "corrupt"
        if len(body) < size:
            fact = f"track {number} lacks {size - len(body)} of its {size} bytes"
        else:
            fact = f"track {number}, byte {damage.at}: {damage}"
        if not lenient:
            raise MidiFileError(f"the MIDI file is {kind} ({fact}); {_LENIENTLY}", "lenient")
        lost = len(body) - damage.at if damage is not None else 0
        warnings.append(
            f"the file is {kind}: {fact}" + (f"; the last {lost} bytes of the track were not read" if lost else "")
        )
        if end > len(data):  # a size past the end of the file: look for a track after this one
            found = data.find(b"MTrk", start)
            pos = found if found >= 0 else len(data)
    if len(tracks) < declared:
        fact = f"the header declares {declared} tracks but the file holds {len(tracks)}"
        if not lenient:
            raise MidiFileError(f"the MIDI file is truncated or its header corrupt ({fact}); {_LENIENTLY}", "lenient")
        if not tracks:
            raise MidiFileError(f"the MIDI file has no track that can be read ({fact}); re-export it")
        warnings.append(f"{fact}: rendering what could be read")
    elif len(tracks) > declared:
        warnings.append(f"the file holds {len(tracks)} tracks but its header declares {declared}: all are read")
    if fmt == 0 and len(tracks) > 1:
        warnings.append(f"a format 0 file holds {len(tracks)} tracks: they are played together, as in format 1")
    return MidiData(fmt, declared, ticks_per_beat, seconds_per_tick, tracks, warnings)


def _division(division: int) -> tuple[int, float]:
    """``(ticks per beat, 0.0)``, or ``(0, seconds per tick)`` for SMPTE time; refused when unreadable."""
    if not division & 0x8000:
        if division == 0:
            raise MidiFileError("the MIDI header gives 0 ticks per beat (1-32767); the file is corrupt")
        return division, 0.0
    rate_byte, ticks = division >> 8, division & 0xFF
    fps = 256 - rate_byte  # the rate is stored as a negative byte
    if fps not in SMPTE_RATES:
        raise MidiFileError(
            f"the MIDI header's SMPTE rate byte 0x{rate_byte:02X} is {-fps} frames per second, not -24, -25, "
            "-29 or -30: the song's timing is unknown; the file is corrupt, re-export it"
        )
    if ticks == 0:
        raise MidiFileError("the MIDI header gives SMPTE time with 0 ticks per frame (1-255); the file is corrupt")
    return 0, 1.0 / (SMPTE_RATES[fps] * ticks)


def _read_track(body: bytes, rows: array) -> tuple[int, _Damage | None]:
    """Append the messages of one track chunk to ``rows``: ``(data bytes clipped, damage)``, the
    damage None when the track reads to its end (the messages before it are kept)."""
    n = len(body)
    pos = tick = clipped = read = 0  # read: the tick of the last complete message
    status = 0  # running status (0: none)
    append = rows.extend
    damage = None
    try:
        while pos < n:
            start = pos
            delta, pos = _number(body, pos, start, "delta time")
            tick += delta
            if pos >= n:
                raise _Damage("the track ends after a delta time", start)
            b = body[pos]
            if b >= 0x80:
                pos += 1
                if b < 0xF0:
                    status = b
            elif status == 0:
                raise _Damage(f"data byte 0x{b:02X} where a status byte belongs", start)
            else:
                b = status  # running status: the data bytes follow
            if b < 0xF0:  # a channel message
                count = _CHANNEL_DATA[b & 0xF0]
                if pos + count > n:
                    raise _Damage("a message runs past the track's end", start)
                d = body[pos : pos + count]
                pos += count
                if max(d) > 127:
                    clipped += sum(v > 127 for v in d)
                    d = bytes(min(v, 127) for v in d)
                e = ev.from_bytes((b, *d))
                if e is not None:
                    append((tick, e.kind, e.channel, e.a, e.b))
            elif b == 0xFF:  # a meta event: type, length, data
                if pos >= n:
                    raise _Damage("the track ends inside a meta event", start)
                kind = body[pos]
                length, pos = _number(body, pos + 1, start, "meta event length")
                data = _take(body, pos, length, start)
                pos += length
                if kind == 0x2F:
                    read = tick
                    break  # end of track: what follows is not read
                if kind == 0x51 and length == 3:
                    tempo = (data[0] << 16) | (data[1] << 8) | data[2]
                    if tempo > 0:
                        append((tick, TEMPO, 0, tempo, 0))
            elif b == 0xF0 or b == 0xF7:  # sysex: length, data
                status = 0
                length, pos = _number(body, pos, start, "sysex length")
                data = _take(body, pos, length, start)
                pos += length
                if ev.is_reset_sysex(data.removeprefix(b"\xf0").removesuffix(b"\xf7")):  # GM, GM2, GS, XG
                    append((tick, ev.RESET, 0, 0, 0))
            elif b in _SYSTEM_DATA:  # system common or real time: not used
                if b < 0xF8:
                    status = 0
                _take(body, pos, _SYSTEM_DATA[b], start)
                pos += _SYSTEM_DATA[b]
            else:
                raise _Damage(f"undefined status byte 0x{b:02X}", start)
            read = tick
    except _Damage as exc:
        damage = exc
    append((read, END, 0, 0, 0))
    return clipped, damage


def _number(body: bytes, pos: int, start: int, what: str) -> tuple[int, int]:
    """The variable-length quantity at ``pos`` (at most 4 bytes) and the position after it."""
    value = 0
    for end in range(pos, pos + 4):
        if end >= len(body):
            raise _Damage(f"the track ends inside a {what}", start)
        b = body[end]
        value = (value << 7) | (b & 0x7F)
        if b < 0x80:
            return value, end + 1
    raise _Damage(f"a {what} longer than 4 bytes", start)


def _take(body: bytes, pos: int, length: int, start: int) -> bytes:
    """``length`` bytes at ``pos``: they must lie inside the track."""
    if pos + length > len(body):
        raise _Damage(f"an event of {length} bytes runs past the track's end", start)
    return body[pos : pos + length]
