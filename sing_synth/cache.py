"""The live note cache: rendered notes in memory (a fixed note bank), then on disk.

:class:`NoteCache` is the engine's note source in live play. The audio thread only calls
:meth:`~NoteCache.find`, :meth:`~NoteCache.standin` and :meth:`~NoteCache.request`: dictionary
lookups and deque appends, which never block and do bounded work (the stand-in rule of
:mod:`sing_synth.note_source`). Notes live in a :class:`~sing_synth.bank.NoteBank` sized by the
memory budget and allocated once: its slots are reused, never reallocated, so the audio thread
can read them at any time. Everything else (disk, eviction) is called by the cache's filler
(:class:`~sing_synth.cache_filler.CacheFiller`, the renderer thread), never by the audio thread.
This module does not import torch.

Disk layout: ``CACHE_DIR/<preset sha256[:16]>-<rate>/<instrument>/<pitch>-<vclass>.note``, in
the format of :mod:`sing_synth.note_file`. A note is read straight into its bank slot; an entry
that is damaged, foreign or unreadable is deleted (and rendered again). ``CACHE_DIR`` is the
``cache_dir`` given, else ``$SING_SYNTH_CACHE``, else ``$XDG_CACHE_HOME/sing-synth``
(``~/.cache/sing-synth``).
"""

from __future__ import annotations

import collections
import os
import threading
import time
from pathlib import Path

import numpy as np

from . import note_file
from .bank import NoteBank
from .note_source import Key, NoteSlots


def default_cache_dir() -> Path:
    if os.environ.get("SING_SYNTH_CACHE"):
        return Path(os.environ["SING_SYNTH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sing-synth"


class NoteCache(NoteSlots):
    """Notes of one preset at one output rate, within ``memory_bytes`` of memory."""

    def __init__(self, preset, rate: int, cache_dir=None, memory_bytes: int = 2 << 30):
        super().__init__(rate)
        self.preset = preset
        self.dir = Path(cache_dir or default_cache_dir()) / f"{preset.sha256[:16] or 'unhashed'}-{self.rate}"
        self.memory_bytes = int(memory_bytes)
        self.requests: collections.deque = collections.deque(maxlen=1024)  # audio thread -> filler
        self.wake = threading.Event()  # set with each request
        self._used: collections.deque = collections.deque(maxlen=4096)  # recently played keys
        self.loaded = 0  # statistics, plain ints
        self.corrupt = 0
        self.dropped = 0  # notes not kept: memory full of notes being played (they stay on disk)

    # Audio-thread side: never blocks ---------------------------------------------------
    def find(self, instrument: int, pitch: int, vclass: int) -> int:
        """The note's slot (-1: not in memory); a found note is marked as played (kept in memory)."""
        slot = self.slots.get((instrument, pitch, vclass), -1)
        if slot > 0:
            self._used.append((instrument, pitch, vclass))
        return slot

    def request(self, instrument: int, pitch: int, vclass: int) -> None:
        self.requests.append((instrument, pitch, vclass))
        self.wake.set()

    @property
    def memory_used(self) -> int:
        """Bytes of audio held in memory."""
        return 0 if self.bank is None else len(self.slots) * 4 * self.bank.length

    # Memory ----------------------------------------------------------------------------
    def _slot(self, n: int) -> int:
        """A free bank slot for ``n`` samples, evicting the least recently played notes if needed;
        -1 when every slot is still played after a short wait (the note stays on disk)."""
        if self.bank is None:
            self.bank = NoteBank(n, max(2, self.memory_bytes // (4 * n)))
        bank = self.bank
        slot = bank.alloc(min(n, bank.length))
        deadline = time.monotonic() + 0.2
        while slot < 0:
            self._evict()
            slot = bank.alloc(min(n, bank.length))
            if slot < 0:  # evicted slots are reused once the audio thread has let go of them
                if time.monotonic() > deadline:
                    self.dropped += 1
                    return -1
                time.sleep(0.005)
        return slot

    def _publish(self, key: Key, slot: int) -> None:
        self.bank.set_loop(slot, key[1], self.rate)
        old = self.slots.get(key)
        self.slots[key] = slot  # the audio thread may play it from now on
        if old is not None:
            self.bank.retire(old)

    def _insert(self, key: Key, wav: np.ndarray) -> None:
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        slot = self._slot(len(wav))
        if slot > 0:
            n = self.bank.lengths[slot]
            self.bank.data[slot, :n] = wav[:n]
            self._publish(key, slot)

    def _evict(self) -> None:
        """Drop the least recently played notes (never ones played in the last few thousand notes)."""
        while True:
            try:
                recent = set(self._used)  # the audio thread may append meanwhile: retry
                break
            except RuntimeError:
                continue
        target = max(1, self.bank.capacity // 10)
        for key in list(self.slots):
            if target <= 0:
                break
            if key not in recent:
                self.bank.retire(self.slots.pop(key))  # unpublished first, then retired
                target -= 1

    # Disk ------------------------------------------------------------------------------
    def path(self, key: Key) -> Path:
        i, p, v = key
        return self.dir / str(i) / f"{p}-{v}.note"

    def load(self, key: Key) -> bool:
        """Read a note from disk straight into a bank slot and publish it. False when it is not
        on disk (a damaged or foreign file is deleted: the note is to be rendered again); True
        when loaded, or left on disk because memory is full of notes being played."""
        path = self.path(key)
        slot = -1
        try:
            with open(path, "rb") as f:
                header = note_file.read_header(f)
                ok = header is not None
                if ok:
                    n, crc = header
                    slot = self._slot(n)
                    if slot < 0:
                        return True  # memory full of played notes: it stays on disk for later
                    ok = self.bank.lengths[slot] == n  # a note longer than this bank's notes is foreign
                if ok:
                    ok = note_file.read_samples(f, self.bank.data[slot, :n], crc)
        except FileNotFoundError:
            return False
        except OSError:
            ok = False
        if not ok:  # truncated, corrupt or foreign: re-render it
            if slot > 0:
                self.bank.free(slot)
            self.corrupt += 1
            path.unlink(missing_ok=True)
            return False
        self._publish(key, slot)
        self.loaded += 1
        return True

    def store(self, key: Key, wav: np.ndarray) -> None:
        """Keep a rendered note: on disk (best effort) and in memory."""
        wav = np.ascontiguousarray(wav, dtype=np.float32)
        try:
            note_file.write(self.path(key), wav)
        except OSError:  # a read-only or full disk only costs the next start its speed
            pass
        self._insert(key, wav)
