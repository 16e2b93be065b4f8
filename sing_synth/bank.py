"""The note bank: every rendered note the engine can play, as rows ("slots") of one float32 array.

The voice pool mixes all its voices at once: one ``np.take`` gathers the samples of every
sounding voice from the bank's flat buffer (slot x stride + position). Notes are therefore
stored in the bank, not as separate arrays, and a note source hands out slot numbers.

Slot 0 is silence (a voice layer that is not used points there). Each row holds ``length``
samples followed by zeros, so reading one sample past a note's end is safe.

Sharing with the audio thread (live play): a writer (the cache's renderer thread) fills a free
slot and only then publishes its number; to drop a note it unpublishes the number first and
:meth:`retire` s the slot. The audio thread counts the voices playing each slot (``users``) and
advances ``epoch`` once per block; a retired slot is reused only when no voice plays it and
two blocks have passed since it was retired, so a lookup made just before the slot was
unpublished has registered its voice by then. Before any engine attaches, retiring frees at once.
"""

from __future__ import annotations

import numpy as np

PAD = 2  # zero samples after each note: interpolation may read one past the end


class NoteBank:
    """``capacity`` notes of up to ``length`` samples. ``growable`` banks (offline rendering,
    tests) grow in slots and in length as notes are added; fixed ones (live) never reallocate."""

    def __init__(self, length: int, capacity: int, growable: bool = False) -> None:
        if length < 1 or capacity < 1:
            raise ValueError("a note bank needs a positive length and capacity")
        self.length = int(length)
        self.growable = growable
        self.data = np.zeros((int(capacity) + 1, self.length + PAD), np.float32)
        self.lengths = np.zeros(int(capacity) + 1, np.int64)
        self.users = np.zeros(int(capacity) + 1, np.int32)  # voices playing each slot (audio thread)
        self.epoch = 0  # blocks processed by the engine playing this bank (audio thread)
        self.attached = False  # set by the voice pool on its first block
        self._free = list(range(int(capacity), 0, -1))  # pop() hands out the lowest slot
        self._retired: list[tuple[int, int]] = []  # (slot, epoch when retired)

    @property
    def capacity(self) -> int:
        return len(self.data) - 1

    @property
    def stride(self) -> int:
        return self.data.shape[1]

    @property
    def free_slots(self) -> int:
        """Slots ready for a new note (retired ones that are no longer played included)."""
        self._reclaim()
        return len(self._free)

    def add(self, wav: np.ndarray) -> int:
        """Copy a note into a free slot and return the slot, or -1 when the bank is full."""
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        slot = self.alloc(len(wav))
        if slot > 0:
            self.data[slot, : len(wav)] = wav
        return slot

    def alloc(self, n: int) -> int:
        """A free slot for a note of ``n`` samples (zeros; the caller writes them), or -1 when full."""
        if n > self.length:
            if not self.growable:
                raise ValueError(f"note of {n} samples in a bank of {self.length}-sample notes")
            self._resize(self.capacity, max(n, 2 * self.length))
        if not self._free:
            self._reclaim()
        if not self._free:
            if not self.growable:
                return -1
            self._resize(2 * self.capacity, self.length)
        slot = self._free.pop()
        self.data[slot, n:] = 0.0
        self.lengths[slot] = n
        return slot

    def free(self, slot: int) -> None:
        """Give back a slot whose number was never handed out (e.g. a note that failed to load)."""
        self._free.append(slot)

    def note(self, slot: int) -> np.ndarray:
        """A read-only view of the note in ``slot``."""
        view = self.data[slot, : self.lengths[slot]]
        view.flags.writeable = False
        return view

    def retire(self, slot: int) -> None:
        """Give a slot back once its number is no longer handed out (see the module docstring)."""
        if slot > 0:
            self._retired.append((slot, self.epoch))

    def _reclaim(self) -> None:
        keep = []
        for slot, epoch in self._retired:
            if not self.attached or (self.epoch >= epoch + 2 and self.users[slot] == 0):
                self._free.append(slot)
            else:
                keep.append((slot, epoch))
        self._retired = keep
        self._free.sort(reverse=True)

    def _resize(self, capacity: int, length: int) -> None:
        """Reallocate (growable banks only): slots keep their numbers."""
        old = self.data
        self.data = np.zeros((capacity + 1, length + PAD), np.float32)
        self.data[: len(old), : old.shape[1]] = old
        self.lengths = np.resize(self.lengths, capacity + 1)
        self.lengths[len(old) :] = 0
        users = np.zeros(capacity + 1, np.int32)
        users[: len(old)] = self.users
        self.users = users
        self._free = sorted(set(self._free) | set(range(len(old), capacity + 1)), reverse=True)
        self.length = length
