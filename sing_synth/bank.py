"""The note bank: every rendered note the engine can play, as rows ("slots") of one float32 array.

The voice pool mixes all its voices at once: one ``np.take`` gathers the samples of every
sounding voice from the bank's flat buffer (slot x stride + position). Notes are therefore
stored in the bank, not as separate arrays, and a note source hands out slot numbers.

Slot 0 is silence (a voice layer that is not used points there). Each row holds ``length``
samples followed by zeros, so reading one sample past a note's end is safe.

Sustain loops: a held key longer than the generated note keeps sounding for sustaining notes by
looping a whole number of periods of the note's pitch from its steady part. The writer of a slot
places the loop (:meth:`set_loop`) before publishing it and bakes the loop's crossfade into the
samples just before the loop end (as samplers do), so a looping voice reads the slot linearly
and jumps back by the loop length, with no second read and no crossfade arithmetic per block.
The baked part blends two stretches of the same steady sound, a whole number of periods apart.

Sharing with the audio thread (live play): a writer (the cache's renderer thread) fills a free
slot and only then publishes its number; to drop a note it unpublishes the number first and
:meth:`retire` s the slot. The audio thread counts the voices playing each slot (``users``) and
advances ``epoch`` once per block; a retired slot is reused only when no voice plays it and
two blocks have passed since it was retired, so a lookup made just before the slot was
unpublished has registered its voice by then. Before any engine attaches, retiring frees at once.
"""

from __future__ import annotations

import numpy as np

from . import dsp

PAD = 2  # zero samples after each note: interpolation may read one past the end
# The model's notes are 4 s with the key held 3 s (NSynth): the steady part lies before that.
LOOP_START, LOOP_END = 0.40, 0.70  # fractions of the note length
SUSTAIN_DROP = 0.25  # a note is "sustaining" when its level at LOOP_END is within -12 dB of its body
XFADE = 0.1  # seconds of loop crossfade (at most a third of the loop)


class NoteBank:
    """``capacity`` notes of up to ``length`` samples. ``growable`` banks (offline rendering,
    tests) grow in slots and in length as notes are added; fixed ones (live) never reallocate."""

    def __init__(self, length: int, capacity: int, growable: bool = False) -> None:
        if length < 1 or capacity < 1:
            raise ValueError("a note bank needs a positive length and capacity")
        self.length = int(length)
        self.growable = growable
        self.data = np.zeros((int(capacity) + 1, self.length + PAD), np.float32)
        # the silent row is read by every voice's unused layer, page after page as the voice plays:
        # its pages are made here, not faulted in by the audio thread (np.zeros leaves them unmapped)
        self.data[0] = 0.0
        self.lengths = np.zeros(int(capacity) + 1, np.int64)
        self.users = np.zeros(int(capacity) + 1, np.int32)  # voices playing each slot (audio thread)
        self.loop_end = np.zeros(int(capacity) + 1, np.int64)  # sustain loop [end - len, end); len 0: none
        self.loop_len = np.zeros(int(capacity) + 1, np.int64)
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
        self.loop_len[slot] = 0
        return slot

    def reserve(self, notes: int, length: int) -> None:
        """Grow (growable banks only) so that ``notes`` more notes of ``length`` samples fit
        without further growth: one copy instead of one per doubling."""
        free = self.free_slots
        if free < notes or length > self.length:
            if not self.growable:
                raise ValueError("only a growable bank can reserve room")
            self._resize(self.capacity + max(0, notes - free), max(length, self.length))

    def set_loop(self, slot: int, pitch: float, rate: int) -> bool:
        """Place the sustain loop of the note in ``slot`` (MIDI ``pitch`` at ``rate`` Hz) when the
        note sustains, and bake its crossfade; call it after writing the note, before publishing it."""
        self.loop_len[slot] = 0
        n = int(self.lengths[slot])
        if n < rate // 2:
            return False
        start, end = int(LOOP_START * n), int(LOOP_END * n)
        win = min(2048, (end - start) // 4)
        x = self.data[slot]
        body = x[int(0.15 * n) : int(0.15 * n) + win]
        tail = x[end - win : end]
        e_body, e_tail = float(np.dot(body, body)), float(np.dot(tail, tail))
        if e_body <= 0.0 or e_tail < e_body * SUSTAIN_DROP * SUSTAIN_DROP:
            return False  # a decaying note dies away with its sample
        period = rate / dsp.midi_to_hz(pitch)
        length = end - start
        if period < length / 2:
            length = int(round(max(1, round(length / period)) * period))
        xfade = min(int(XFADE * rate), length // 3)
        if xfade < 16 or end - length < xfade:
            return False
        # the last xfade samples before the loop end fade into the xfade samples before its start,
        # so that the jump back from the end lands where the fade has arrived
        w = np.arange(xfade, dtype=np.float32) / np.float32(xfade)
        seg = x[end - xfade : end]
        seg += w * (x[end - length - xfade : end - length] - seg)
        self.loop_end[slot] = end
        self.loop_len[slot] = length
        return True

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
        for name in ("loop_end", "loop_len"):
            old_loop = getattr(self, name)
            new_loop = np.zeros(capacity + 1, np.int64)
            new_loop[: len(old_loop)] = old_loop
            setattr(self, name, new_loop)
        self._free = sorted(set(self._free) | set(range(len(old), capacity + 1)), reverse=True)
        self.length = length
