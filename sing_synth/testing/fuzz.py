"""Hostile MIDI files, seeded: valid songs mutated byte by byte, and hand-built nasties.

:func:`campaign` reads every file strictly and leniently and renders a sample of them through
the whole ``render_file`` (a tiny seeded preset by default), and counts what happened:

- ``read``: read strictly; ``salvaged``: refused strictly, read leniently (with warnings);
  ``refused``: refused both ways with the project's one-line :class:`~sing_synth.errors.SingError`;
- ``rendered`` / ``render refused``: of the files rendered (leniently), written or refused;
- ``crash``: any other exception (a traceback: a bug); ``hang``: a file that took longer than
  the time limit; ``leftover``: a render that left a file behind.

Only the project's own errors are allowed. The same seed gives the same files, so a crash is
reproduced by ``(seed, index)`` and the file is kept when ``keep`` is given. ``tests/test_fuzz.py``
runs a few hundred files; ``bench/fuzz.py`` runs tens of thousands.
"""

from __future__ import annotations

import collections
import io
import random
import resource
import signal
import struct
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

HEADER = b"MThd\x00\x00\x00\x06"


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def _file(fmt: int, division: int, tracks: list[bytes], declared: int | None = None) -> bytes:
    body = [HEADER, struct.pack(">HHH", fmt, len(tracks) if declared is None else declared, division)]
    for t in tracks:
        body += [b"MTrk", struct.pack(">I", len(t)), t]
    return b"".join(body)


NOTE = bytes.fromhex("0090 3c64 8360 803c 40 00ff2f00")  # a note at 0, released after 480 ticks


def flood(notes: int, seed: int = 0) -> bytes:
    """A 0.5 s song of ``notes`` simultaneous note-ons over 16 channels, each after a program change
    to a random program, at random pitches and velocities (a type 0 file of 7 bytes per note)."""
    body = bytearray()
    rng = random.Random(seed)
    for k in range(notes):
        body += bytes([0, 0xC0 | k % 16, rng.randrange(128), 0, 0x90 | k % 16, rng.randrange(128), 1 + rng.randrange(127)])
    body += bytes.fromhex("8360 803c40 00ff2f00")
    return _file(0, 480, [bytes(body)])


def nasties() -> dict[str, bytes]:
    """Hand-built hostile files, each once a traceback or a silently wrong song (issue 14)."""
    return {
        "key-signature-nine-sharps": _file(1, 480, [bytes.fromhex("00ff59020900") + NOTE]),
        "32768-tracks": _file(1, 480, [NOTE], declared=0x8000),
        "65535-tracks": _file(1, 480, [NOTE], declared=0xFFFF),
        "format-3": _file(3, 480, [NOTE]),
        "format-ffff": _file(0xFFFF, 480, [NOTE]),
        "smpte-rate-0x80": _file(1, 0x8028, [NOTE]),
        "smpte-0-ticks-per-frame": _file(1, 0xE700, [NOTE]),
        "0-ticks-per-beat": _file(1, 0, [NOTE]),
        "note-after-10-hours": _file(1, 480, [_vlq(10 * 3600 * 960) + bytes.fromhex("903c64 8360 803c40 00ff2f00")]),
        "longest-delta-slowest-tempo": _file(0, 1, [bytes.fromhex("00ff5103ffffff ffffff7f 903c64 00ff2f00")]),
        "five-byte-delta": _file(0, 480, [bytes.fromhex("8080808000 903c64 00ff2f00")]),
        "sysex-past-the-track": _file(1, 480, [bytes.fromhex("0090 3c64 00f0 7f 01 02")]),
        "meta-past-the-file": _file(1, 480, [bytes.fromhex("00ff01 8fffffff7f 41")]),
        "running-status-first": _file(1, 480, [bytes.fromhex("00 3c64 00ff2f00")]),
        "undefined-status": _file(1, 480, [bytes.fromhex("00f4 00ff2f00")]),
        "track-size-past-the-file": HEADER + struct.pack(">HHH", 1, 1, 480) + b"MTrk\xff\xff\xff\xff" + NOTE,
        "header-size-0": b"MThd\x00\x00\x00\x00" + struct.pack(">HHH", 1, 1, 480) + b"MTrk" + struct.pack(">I", len(NOTE)) + NOTE,
        "header-only": HEADER + struct.pack(">HHH", 1, 1, 480),
        "no-tracks-declared": _file(1, 480, [], declared=0),
        "empty-track": _file(1, 480, [b""]),
        "flood-2000-notes": flood(2000),
        "bytes-above-127": _file(1, 480, [bytes.fromhex("0090 c8ff 8360 803c 40 00ff2f00")]),
        "tempo-0": _file(1, 480, [bytes.fromhex("00ff5103000000") + NOTE]),
        "tempo-short": _file(1, 480, [bytes.fromhex("00ff510107") + NOTE]),
    }


def seeds() -> dict[str, bytes]:
    """Valid files to mutate: the demo songs of :mod:`~sing_synth.testing.songs`, short songs, the nasties."""
    from . import songs

    found = {}
    for name, mid in (("song", songs.song(0.3, seed=2)), ("controllers", songs.controllers())):
        buf = io.BytesIO()
        mid.save(file=buf)
        found[name] = buf.getvalue()
    return {**found, **nasties()}


def mutate(data: bytes, rng: random.Random, others: list[bytes]) -> bytes:
    """A few random edits: bytes changed, inserted, deleted, repeated, a size field or a delta time
    made huge, a cut, a splice with another file."""
    d = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 5, 8))):
        k = rng.randrange(len(d)) if d else 0
        op = rng.random()
        if op < 0.35 and d:
            d[k] = rng.randrange(256)
        elif op < 0.45 and d:
            d[k] ^= 1 << rng.randrange(8)
        elif op < 0.55:
            d[k:k] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op < 0.65 and d:
            del d[k : k + rng.randint(1, 16)]
        elif op < 0.72 and d:
            d[k:k] = d[k : k + rng.randint(1, 64)] * rng.randint(2, 50)  # repeated: many events
        elif op < 0.80:
            d[k:k] = rng.choice((b"\xff\xff\xff\x7f", b"\x8f\xff\xff\xff\x7f", b"\x80\x80\x80\x80"))  # huge deltas
        elif op < 0.87:
            pos = d.find(rng.choice((b"MTrk", b"MThd")))
            if pos >= 0 and pos + 8 <= len(d):
                d[pos + 4 : pos + 8] = struct.pack(">I", rng.choice((0, 1, len(d), 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(1 << 16))))
        elif op < 0.93:
            del d[rng.randrange(len(d) + 1) :]
        else:
            other = rng.choice(others)
            j = rng.randrange(len(other) + 1)
            d[k:] = other[j:]
    return bytes(d)


class _Timeout(Exception):
    pass


def _limited(seconds: float, work: Callable[[], object]):
    """``work()``, interrupted after ``seconds`` (main thread only: SIGALRM)."""

    def alarm(signum, frame):
        raise _Timeout

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return work()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def campaign(
    files: int,
    seed: int = 0,
    render_every: int = 0,
    preset=None,
    rate: int = 8000,
    limit: float = 60.0,
    keep: str | Path | None = None,
    corpus: list[bytes] | None = None,
    progress: Callable[[int, collections.Counter], None] | None = None,
) -> tuple[collections.Counter, list[str]]:
    """Read ``files`` mutated files (the seeds first, unmutated) strictly and leniently; render every
    ``render_every``-th one (0: none) with ``preset`` (default: a tiny seeded one) at ``rate``.
    Returns the counts and one line per crash, hang or leftover (the file kept in ``keep``)."""
    from ..errors import SingError
    from ..midi_file import read
    from ..progress import Progress
    from ..render import render_file

    start = seeds()
    pool = list(start.values()) + list(corpus or [])
    songs = [start["song"], start["controllers"], *(corpus or [])]
    rng = random.Random(seed)
    counts: collections.Counter = collections.Counter()
    problems: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="sing-synth-fuzz-"))
    if render_every and preset is None:
        from .presets import general_midi_instruments, untrained_preset

        preset = untrained_preset(work / "preset", general_midi_instruments(), name="fuzz")
    path, out = work / "f.mid", work / "out"
    out.mkdir()
    for index in range(files):
        base = rng.choice(pool if rng.random() < 0.5 else songs)  # half of them mutate a real song
        data = pool[index] if index < len(pool) else mutate(base, rng, pool)
        path.write_bytes(data)

        def problem(kind: str, what: str, index: int = index, data: bytes = data) -> None:
            counts[kind] += 1
            problems.append(f"{kind} in file {index} (seed {seed}): {what}")
            if keep is not None:
                Path(keep).mkdir(parents=True, exist_ok=True)
                (Path(keep) / f"{kind}-{seed}-{index}.mid").write_bytes(data)

        readable = {}
        for lenient in (False, True):
            try:
                _limited(limit, lambda lenient=lenient: read(path, rate, lenient=lenient, max_length=3600))
                readable[lenient] = True
            except SingError as exc:
                readable[lenient] = False
                if "\n" in str(exc):
                    problem("crash", f"a message of several lines: {exc!r}")
            except _Timeout:
                readable[lenient] = False
                problem("hang", f"reading took more than {limit:g} s (lenient={lenient})")
            except Exception:  # noqa: BLE001 (anything else is the bug this looks for)
                readable[lenient] = False
                problem("crash", traceback.format_exc(limit=-3).replace("\n", " | "))
        counts["read" if readable.get(False) else "salvaged" if readable.get(True) else "refused"] += 1
        if render_every and index % render_every == 0:
            try:
                _limited(limit, lambda: render_file(
                    path, out / "f.wav", preset, rate=rate, lenient=True, max_length=600, tail=1.0,
                    model_device="cpu", cache=False, memory_bytes=64 << 20, progress=Progress(enabled=False)))
                counts["rendered"] += 1
            except SingError:
                counts["render refused"] += 1
            except _Timeout:
                problem("hang", f"rendering took more than {limit:g} s")
            except Exception:  # noqa: BLE001
                problem("crash", "render: " + traceback.format_exc(limit=-3).replace("\n", " | "))
            left = [p.name for p in out.iterdir() if p.name != "f.wav"]
            if left:
                problem("leftover", f"the render left {left}")
                for p in out.iterdir():
                    p.unlink()
        if progress:
            progress(index + 1, counts)
    return counts, problems
