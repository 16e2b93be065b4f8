"""Where the engine gets rendered notes: the note-source interface, its one stand-in rule, and
the note source of offline rendering.

A note source hands out slot numbers of a :class:`~sing_synth.bank.NoteBank` (float32 mono
notes at the engine's rate) keyed by ``(instrument, pitch, velocity class)``. Live play uses
:class:`~sing_synth.cache.NoteCache` (a fixed bank filled by a renderer thread), offline
rendering and tests use :class:`DictNoteSource` (a growable bank filled in advance). Both are
:class:`NoteSlots`, so both find notes and choose stand-ins with the same code: a song renders
offline with the stand-ins live play would use.

The stand-in rule (:func:`standin`), for a note that is not rendered yet: the nearest rendered
pitch of the same instrument (at equal distance the lower one), in the requested velocity class
if that pitch has it, else in the first class it has among the most played ones
(:data:`COMMON_CLASSES`), re-pitched to the requested pitch. Never another instrument, except
within a morph (:mod:`sing_synth.morph`, made known by :meth:`NoteSlots.add_morph`), whose
positions, its instruments included, stand in for each other: for a position, first the nearest
position rendered at the same pitch (not re-pitched), else the nearest pitch of the position
itself, else of the nearest corner. The search makes at most a fixed number of dictionary
lookups and allocates nothing of size: the audio thread may call it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from . import dsp
from .bank import NoteBank
from .disk_cache import LOADED

# velocity classes by how often they are played (100, 75, 127, 50, 25): stand-ins look at them in
# this order, and a live warm-up renders them in this order
COMMON_CLASSES = (3, 2, 4, 1, 0)

Key = tuple[int, int, int]  # instrument, pitch, velocity class


def standin(
    slots: Mapping[Key, int], instrument: int, pitch: int, vclass: int, near: tuple | None = None
) -> tuple[int, float] | None:
    """The stand-in for a missing note (see the module docstring): its slot and the playback-rate
    ratio that re-pitches it to ``pitch``; None when nothing can stand in. ``near``: for a morph
    position, the other positions and the corners, nearest first (``Morph.neighbours``)."""
    if near is not None:
        for other in near[0]:
            slot = _slot(slots, other, pitch, vclass)
            if slot > 0:
                return slot, 1.0
    found = _nearest_pitch(slots, instrument, pitch, vclass)
    for corner in near[1] if near is not None and found is None else ():
        found = _nearest_pitch(slots, corner, pitch, vclass)
        if found is not None:
            break
    return found


def _slot(slots: Mapping[Key, int], instrument: int, pitch: int, vclass: int) -> int:
    """The note's slot in ``vclass``, else in the first of the common classes it has; -1: none."""
    slot = slots.get((instrument, pitch, vclass), -1)
    if slot < 0:
        for v in COMMON_CLASSES:
            slot = slots.get((instrument, pitch, v), -1)
            if slot > 0:
                break
    return slot


def _nearest_pitch(slots: Mapping[Key, int], instrument: int, pitch: int, vclass: int) -> tuple[int, float] | None:
    """The instrument's nearest rendered pitch (the lower at equal distance), re-pitched."""
    for d in range(1, 128):
        for p in (pitch - d, pitch + d):
            if 0 <= p < 128:
                slot = _slot(slots, instrument, p, vclass)
                if slot > 0:
                    return slot, dsp.semitone_ratio(pitch - p)
    return None


class NoteSource(Protocol):
    """What the engine needs from a note source. The audio-thread methods (``find``, ``standin``,
    ``request``) never block."""

    bank: NoteBank | None

    def find(self, instrument: int, pitch: int, vclass: int) -> int:
        """The note's bank slot, or -1 when it is not rendered yet."""
        ...

    def standin(self, instrument: int, pitch: int, vclass: int) -> tuple[int, float] | None:
        """A nearby rendered note's slot and the playback-rate ratio that re-pitches it to ``pitch``."""
        ...

    def request(self, instrument: int, pitch: int, vclass: int) -> None:
        """Ask for the note to be rendered with top priority (must not block)."""
        ...

    def add_morph(self, morph) -> None:
        """Let the positions of a :class:`~sing_synth.morph.Morph` stand in for each other."""
        ...


class NoteSlots:
    """Published notes (``slots``: key -> bank slot) and the lookups every note source shares.

    ``rate`` is the notes' sample rate (the engine's). A slot is published (entered in ``slots``)
    only once its samples and sustain loop are written; the audio thread reads ``slots`` without
    a lock (single dictionary operations are atomic under the GIL).
    """

    def __init__(self, rate: int) -> None:
        self.rate = int(rate)
        self.bank: NoteBank | None = None
        self.slots: dict[Key, int] = {}
        self.near: dict[int, tuple] = {}  # morph position -> where its stand-ins are looked for

    def add_morph(self, morph) -> None:
        self.near.update(morph.neighbours())

    def find(self, instrument: int, pitch: int, vclass: int) -> int:
        return self.slots.get((instrument, pitch, vclass), -1)

    def standin(self, instrument: int, pitch: int, vclass: int) -> tuple[int, float] | None:
        return standin(self.slots, instrument, pitch, vclass, self.near.get(instrument))

    def request(self, instrument: int, pitch: int, vclass: int) -> None:
        """Nothing to do here: a source that can render notes overrides it."""

    def get(self, instrument: int, pitch: int, vclass: int) -> np.ndarray | None:
        """The note as a read-only array (a view of the bank), or None."""
        slot = self.find(instrument, pitch, vclass)
        return self.bank.note(slot) if slot > 0 else None

    def __contains__(self, key) -> bool:
        return tuple(key) in self.slots

    def __len__(self) -> int:
        return len(self.slots)

    def missing(self, keys) -> list[Key]:
        """The keys without a published note, in the order given."""
        return [k for k in keys if tuple(k) not in self.slots]


class DictNoteSource(NoteSlots):
    """Notes rendered in advance (offline rendering, tests) in a growable bank; requests for
    missing notes are only recorded (``requested``)."""

    def __init__(self, notes: dict | None = None, rate: int = 44100) -> None:
        super().__init__(rate)
        self.requested: list[Key] = []
        for key, wav in (notes or {}).items():
            self.add(key, wav)

    def add(self, key: Key, wav: np.ndarray) -> None:
        key = (int(key[0]), int(key[1]), int(key[2]))
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        if self.bank is None:
            self.bank = NoteBank(max(1, len(wav)), 64, growable=True)
        if key in self.slots:
            self.bank.retire(self.slots.pop(key))
        slot = self.bank.add(wav)
        self.bank.set_loop(slot, key[1], self.rate)
        self.slots[key] = slot

    def drop(self, key: Key) -> None:
        """Forget a note and free its slot at once: offline only (no audio thread may still be
        looking it up), and only a note no voice is playing (its slot's ``users`` is 0)."""
        slot = self.slots.pop(key)
        assert self.bank.users[slot] == 0, "a note being played cannot be dropped"
        self.bank.free(slot)

    def reserve(self, notes: int, length: int) -> None:
        """Make room for ``notes`` more notes of up to ``length`` samples at once (the bank would
        otherwise grow, and copy itself, as they are added)."""
        if self.bank is None:
            self.bank = NoteBank(max(1, length), max(1, notes), growable=True)
        else:
            self.bank.reserve(notes, length)

    def load(self, key: Key, store) -> bool:
        """Read a note from a :class:`~sing_synth.disk_cache.NoteStore` straight into the bank;
        False when it is not there (a damaged file is deleted there: the note is to be rendered)."""
        key = (int(key[0]), int(key[1]), int(key[2]))
        slot = -1

        def alloc(n: int) -> np.ndarray:
            nonlocal slot
            if self.bank is None:
                self.bank = NoteBank(n, 64, growable=True)
            slot = self.bank.alloc(n)
            return self.bank.data[slot, :n]

        if store.read(key, alloc) != LOADED:
            if slot > 0:
                self.bank.free(slot)
            return False
        if key in self.slots:
            self.bank.retire(self.slots.pop(key))
        self.bank.set_loop(slot, key[1], self.rate)
        self.slots[key] = slot
        return True

    @property
    def notes(self) -> dict[Key, np.ndarray]:
        """Every note as a read-only array (a view of the bank)."""
        return {key: self.bank.note(slot) for key, slot in self.slots.items()}

    def request(self, instrument: int, pitch: int, vclass: int) -> None:
        self.requested.append((instrument, pitch, vclass))
