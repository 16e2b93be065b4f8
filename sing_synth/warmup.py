"""Warm-up of the note path before live play: a few notes through the engine, then its state put back.

The first note after start-up used to cost its audio block more than any later one (page faults):
the note path (performer, voices, mixer, effects, limiter) ran for the first time inside the
audio callback, touching for the first time the engine's scratch arrays (``np.zeros`` leaves a
large array's pages unmapped until they are first written: each new page is a fault), NumPy's
and the interpreter's memory, and the memory that is the playing thread's own: its stack, its
malloc arena, OpenBLAS's buffer. A :class:`WarmUp` plays a few notes, a release, a pitch bend and
both effect sends through the engine into a scratch block of the stream's size, a block at a time
in the thread that will play (live play: the stream's first callbacks, which output silence, see
``audio_out``), then puts every attribute and array of the engine back as it was (:func:`snapshot`,
:func:`restore`). Putting the arrays back writes each of them in full, so every page the callback
writes is backed by memory before play. :func:`warm_up` does it all in the calling thread.

What is not put back is the note source's (a live :class:`~sing_synth.cache.NoteCache`), but for
the bank's counts of the voices playing each note: its bank has counted the warm-up's blocks
(``epoch``) and is marked attached, as it is once an engine plays it, and the notes played count as
recently played. None of these changes a sample: an engine warmed up plays the same events into the
same samples as one that never was.
"""

from __future__ import annotations

import collections
import time

import numpy as np

from . import events as ev

__all__ = ["WarmUp", "warm_up", "snapshot", "restore"]

BLOCKS = 8  # warm-up blocks: note-ons at a block's start and inside one, a release, a bend


def _ours(obj) -> bool:
    """An object of this package whose attributes are state (an engine part, a channel)."""
    return type(obj).__module__.startswith("sing_synth.") and hasattr(obj, "__dict__")


def snapshot(root, skip=()) -> list:
    """Everything ``root`` holds, to put back with :func:`restore`: the attributes of every object
    of this package reachable from it, the contents of every array, list, dict and deque among
    them. ``skip``: objects left out, and everything reachable only through them (the note source)."""
    saved: list = []
    seen = {id(o) for o in skip}

    def visit(value) -> None:
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, np.ndarray):
            if value.flags.writeable:
                saved.append((value, value.copy()))
            return
        if _ours(value):
            attrs = dict(vars(value))
            saved.append((value, attrs))
            items = attrs.values()
        elif isinstance(value, (list, collections.deque)):
            items = list(value)
            saved.append((value, items))
        elif isinstance(value, dict):
            items = dict(value)
            saved.append((value, items))
            items = items.values()
        elif isinstance(value, tuple):
            items = value
        else:
            return  # immutable, or not ours: kept by reference
        for item in items:
            visit(item)

    visit(root)
    return saved


def _changed(now, saved) -> bool:
    """Whether a list or deque holds other objects than it did."""
    return len(now) != len(saved) or any(a is not b for a, b in zip(now, saved))


def restore(saved: list) -> None:
    """Put back what :func:`snapshot` saved, in place: arrays written in full, attributes that changed
    set again, containers refilled."""
    for target, state in saved:
        if isinstance(target, np.ndarray):
            np.copyto(target, state)
        elif isinstance(target, list):
            if _changed(target, state):
                target[:] = state
        elif isinstance(target, collections.deque):
            if _changed(target, state):
                target.clear()
                target.extend(state)
        elif isinstance(target, dict):
            if len(target) != len(state) or any(state.get(k, state) is not v for k, v in target.items()):
                target.clear()
                target.update(state)
        else:
            attrs = vars(target)
            for name in [n for n in attrs if n not in state]:
                delattr(target, name)
            for name, value in state.items():
                if attrs.get(name, state) is not value:
                    setattr(target, name, value)


class WarmUp:
    """A warm-up of ``engine``'s note path in blocks of ``frames`` frames (the stream's): made by one
    thread (the state saved, the events queued), run a block at a time by :meth:`step` in the thread
    that will play (the audio callback: some first touches are that thread's own), then put back by
    :meth:`finish` once :attr:`done`. Nothing else may use the engine meanwhile. The notes are the
    channel's own instrument's (``key`` and a third above, at velocities 100 and 90): in live play
    notes ready at start-up."""

    def __init__(self, engine, frames: int, channel: int = 0, key: int = 60) -> None:
        self.engine = engine
        self.saved = snapshot(engine, skip=(engine.source, engine.imap))
        bank = engine.source.bank  # it counts the voices playing each note (the audio thread's side)
        self.users = None if bank is None else bank.users.copy()
        self.out = np.zeros((frames, 2), np.float32)
        self.left = BLOCKS  # blocks still to run (the thread of step() counts them down)
        self.running = False  # step() is running a block
        f0, mid = engine.frame, frames // 2
        events = [
            (0, ev.CONTROL, ev.CC_REVERB, 100),
            (0, ev.CONTROL, ev.CC_CHORUS, 100),
            (0, ev.NOTE_ON, key, 100),  # at the block's start
            (frames + mid, ev.NOTE_ON, key + 4, 90),  # inside a block (a delayed start), two velocity layers
            (2 * frames + mid, ev.NOTE_OFF, key, 0),  # a release inside a block
            (3 * frames + mid, ev.PITCH_BEND, ev.BEND_CENTER + 1024, 0),  # a bend changing inside a block
            (5 * frames, ev.PITCH_BEND, ev.BEND_CENTER, 0),
        ]
        for at, kind, a, b in events:
            engine.push(kind, channel, a, b, f0 + at)

    @property
    def done(self) -> bool:
        return self.left <= 0 and not self.running

    def step(self) -> None:
        """Run the next block (into a scratch block); nothing once all have run, or after :meth:`finish`."""
        self.running = True  # before looking at ``left``: finish() waits while a block runs
        try:
            if self.left > 0:
                self.left -= 1
                self.engine.process(self.out)
        finally:
            self.running = False

    def finish(self, timeout: float = 0.0) -> bool:
        """Put the engine back as it was, after waiting up to ``timeout`` seconds for the blocks to run
        (False: they had not all run; the rest are dropped). Once only: later calls do nothing."""
        if self.saved is None:
            return True
        deadline = time.monotonic() + timeout
        while self.left > 0 and time.monotonic() < deadline:
            time.sleep(0.002)
        ran = self.left <= 0
        self.left = 0
        while self.running:  # a block begun before ``left`` was cleared
            time.sleep(0.001)
        restore(self.saved)
        bank = self.engine.source.bank  # a growable bank may have grown (its slots keep their numbers)
        if bank is not None:
            n = 0 if self.users is None else len(self.users)
            if n:
                np.copyto(bank.users[:n], self.users)
            bank.users[n:] = 0
        self.saved = self.users = None
        return ran


def warm_up(engine, frames: int, channel: int = 0, key: int = 60) -> None:
    """Run a :class:`WarmUp` of ``engine`` in this thread, then put the engine back."""
    warm = WarmUp(engine, frames, channel, key)
    try:
        while not warm.done:
            warm.step()
    finally:
        warm.finish()
