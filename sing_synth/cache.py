"""The live note cache: rendered notes in memory (a fixed note bank), then on disk.

:class:`NoteCache` is the engine's note source in live play. The audio thread only calls
:meth:`~NoteCache.find`, :meth:`~NoteCache.standin` and :meth:`~NoteCache.request`: dictionary
lookups, deque appends and a lock-free :class:`~sing_synth.wake.Wake` of the renderer thread,
which never block and do bounded work (the stand-in rule of :mod:`sing_synth.note_source`).
Notes live in a :class:`~sing_synth.bank.NoteBank` sized by the memory budget and allocated
once: its slots are reused, never reallocated, so the audio thread can read them at any time.
Everything else (disk, eviction) is called by the cache's filler
(:class:`~sing_synth.cache_filler.CacheFiller`, the renderer thread), never by the audio thread.
This module does not import torch.

The disk layer is a :class:`~sing_synth.disk_cache.NoteStore` of the note cache on disk that
renders share (:mod:`sing_synth.disk_cache`): a note is read straight into its bank slot, an
entry that is damaged, foreign or unreadable is deleted there (and rendered again), and a note
rendered here is written there for the next session or render. ``disk=False`` keeps notes in
memory only.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

import numpy as np

from . import disk_cache
from .bank import NoteBank
from .disk_cache import DiskCache, NoteStore
from .disk_cache import default_dir as default_cache_dir  # noqa: F401 (its old name)
from .note_source import Key, NoteSlots
from .wake import Wake


class NoteCache(NoteSlots):
    """Notes of one preset at one output rate, within ``memory_bytes`` of memory; on disk in
    ``disk`` (a :class:`~sing_synth.disk_cache.DiskCache`; default: one in ``cache_dir``, else
    the default directory; False: none) for notes made in ``precision``."""

    def __init__(self, preset, rate: int, cache_dir=None, memory_bytes: int = 2 << 30, disk=None,
                 precision: str = "float32", note_samples: int | None = None):
        super().__init__(rate)
        self.preset = preset
        if disk is None:
            disk = DiskCache(cache_dir)
        # None: no hash. ``note_samples``: the length of every note (a note file of another length is damaged)
        self.disk: NoteStore | None = disk.notes(preset, self.rate, precision, note_samples) if disk else None
        self.dir = self.disk.dir if self.disk else None
        self.memory_bytes = int(memory_bytes)
        self.requests: collections.deque = collections.deque(maxlen=1024)  # audio thread -> filler
        self.wake = Wake()  # set with each request: no lock in the audio thread (sing_synth/wake.py)
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
        return self.disk.path(key)

    def on_disk(self, key: Key) -> bool:
        """Whether the note has a file on disk (not read: it may still turn out damaged)."""
        return self.disk is not None and key in self.disk

    def load(self, key: Key) -> bool:
        """Read a note from disk straight into a bank slot and publish it. False when it is not
        on disk (a damaged or foreign file is deleted: the note is to be rendered again); True
        when loaded, or left on disk because memory is full of notes being played."""
        if self.disk is None:
            return False
        slot = -1

        def alloc(n: int):
            nonlocal slot
            slot = self._slot(n)
            if slot < 0:
                return None
            # a note longer than this bank's notes is foreign: its short row is refused
            return self.bank.data[slot, : self.bank.lengths[slot]]

        found = self.disk.read(key, alloc)
        if found == disk_cache.NO_ROOM:
            return True  # memory full of played notes: it stays on disk for later
        if found != disk_cache.LOADED:
            if slot > 0:
                self.bank.free(slot)
            self.corrupt += found == disk_cache.DAMAGED
            return False
        self._publish(key, slot)
        self.loaded += 1
        return True

    def store(self, key: Key, wav: np.ndarray) -> None:
        """Keep a rendered note: on disk (best effort) and in memory."""
        wav = np.ascontiguousarray(wav, dtype=np.float32)
        if self.disk is not None:
            self.disk.write(key, wav)
        self._insert(key, wav)
