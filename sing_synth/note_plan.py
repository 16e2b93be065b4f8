"""A render's notes within a memory budget: made in time order, dropped when no longer needed.

A song whose distinct notes all fit in the budget has them all made before mixing (the plain
path of :mod:`sing_synth.render`). A song that needs more (a flood of simultaneous notes over
every program, or simply a long song with many instruments) is mixed with a :class:`NotePlan`:
before the engine is given an event, the notes of the next stretch of events are made resident
in one batch (read from the disk cache, else rendered), and to make room the plan drops notes
that no voice is playing, the one needed again last first (never needed again: first of all).
The bank of notes never grows past ``capacity`` notes, so a render never holds more than its
budget of notes, whatever the file: a dropped note needed again is read from the disk cache (or
rendered again, without one).

Progress is guaranteed when ``capacity`` exceeds the notes the voices can be playing at once
(two layers per voice of the pool, stolen voices fading out included): :func:`min_capacity`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

from .note_source import DictNoteSource, Key


def min_capacity(pool_size: int) -> int:
    """Notes a plan needs room for: what every voice of the pool may play, and one note-on more."""
    return 2 * pool_size + 2


class NotePlan:
    """The notes of a song's note-ons (``uses``: event index and the keys it plays, in event order),
    made resident in ``source`` by ``make(keys)`` within ``capacity`` notes, ``batch`` at a time."""

    def __init__(
        self,
        source: DictNoteSource,
        uses: Sequence[tuple[int, Sequence[Key]]],
        capacity: int,
        make: Callable[[list[Key]], None],
        batch: int = 64,
        lookahead: int = 4096,
    ) -> None:
        self.source, self.capacity, self.make = source, int(capacity), make
        self.batch, self.lookahead = max(1, int(batch)), max(1, int(lookahead))
        self.keys: dict[int, Sequence[Key]] = {}  # event index -> the notes it plays
        self.when: dict[Key, list[int]] = {}  # note -> the event indices that play it, in order
        for index, keys in uses:
            self.keys[index] = keys
            for key in keys:
                self.when.setdefault(key, []).append(index)
        self.events = sorted(self.keys)  # the note-ons' event indices
        self.made = 0  # notes made resident (a note dropped and needed again counts again)
        self.dropped = 0

    def next_use(self, key: Key, index: int) -> float:
        """The first event at or after ``index`` that plays ``key`` (inf: none)."""
        uses = self.when.get(key, ())
        k = bisect.bisect_left(uses, index)
        return uses[k] if k < len(uses) else float("inf")

    def prepare(self, pending: int, index: int) -> int:
        """Make resident the notes of the events from ``index`` on, as far as room allows; the events
        from ``pending`` to ``index`` are queued in the engine but not yet played (their notes stay).
        Returns the event index up to which every note is resident: ``index`` itself when even
        that event's notes do not fit until the engine has played the queued ones."""
        source, slots = self.source, self.source.slots
        users = source.bank.users if source.bank is not None else None
        events = self.events
        start = bisect.bisect_left(events, index)
        queued = {key for e in events[bisect.bisect_left(events, pending) : start] for key in self.keys[e]}
        idle = [k for k, slot in slots.items() if k not in queued and (users is None or users[slot] == 0)]
        idle.sort(key=lambda k: self.next_use(k, index))  # the last needed at the end: popped first
        free = self.capacity - len(slots)
        need: list[Key] = []
        chosen: set[Key] = set()
        drop: list[Key] = []
        dropped_until = float("inf")  # the window ends before the first event playing a dropped note
        for e in events[start : start + self.lookahead]:
            new = [k for k in dict.fromkeys(self.keys[e]) if k not in slots and k not in chosen]
            while len(new) > free and idle and self.next_use(idle[-1], index) > e:
                key = idle.pop()
                drop.append(key)
                dropped_until = min(dropped_until, self.next_use(key, index))
                free += 1
            if len(new) > free or e >= dropped_until or (need and len(need) + len(new) > self.batch):
                end = e
                break
            need += new
            chosen.update(new)
            free -= len(new)
        else:  # every note-on of the lookahead fits: resident up to the next one
            end = events[start + self.lookahead] if start + self.lookahead < len(events) else 1 << 62
        for key in drop:
            source.drop(key)
        self.dropped += len(drop)
        if need:
            self.make(need)
            self.made += len(need)
        return end
