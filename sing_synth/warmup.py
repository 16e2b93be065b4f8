"""Warm-up of the note path before live play: a few notes through the engine, then its state put back.

The first note after start-up used to cost its audio block more than any later one (page faults,
a millisecond or two): the note path (performer, voices, mixer, effects, limiter) ran for the
first time inside the audio callback, touching code, NumPy's inner loops, the interpreter's
allocator and the engine's scratch arrays for the first time (``np.zeros`` leaves a large array's
pages unmapped until they are first written: each new page is a fault). :func:`warm_up` runs that
path before the stream starts: it plays a few notes, a release, a pitch bend and both effect
sends through the engine into scratch blocks of the stream's size, then puts every attribute and
array of the engine back as it was (:func:`snapshot`, :func:`restore`). Putting the arrays back
writes each of them in full, so every page the callback writes is backed by memory before play.

What is not put back is the note source's (a live :class:`~sing_synth.cache.NoteCache`): its
bank has counted the warm-up's blocks (``epoch``) and is marked attached, as it is once an engine
plays it, and the notes played count as recently played. None of these changes a sample: an
engine warmed up plays the same events into the same samples as one that never was.
"""

from __future__ import annotations

import collections

import numpy as np

from . import events as ev

__all__ = ["warm_up", "snapshot", "restore"]

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


def restore(saved: list) -> None:
    """Put back what :func:`snapshot` saved, in place: arrays written in full, attributes that changed
    set again, containers refilled."""
    for target, state in saved:
        if isinstance(target, np.ndarray):
            np.copyto(target, state)
        elif isinstance(target, (list, collections.deque)):
            target.clear()
            target.extend(state)
        elif isinstance(target, dict):
            target.clear()
            target.update(state)
        else:
            attrs = vars(target)
            for name in [n for n in attrs if n not in state]:
                delattr(target, name)
            for name, value in state.items():
                if attrs.get(name, state) is not value:
                    setattr(target, name, value)


def warm_up(engine, frames: int, channel: int = 0, key: int = 60) -> None:
    """Run the note path of ``engine`` for a few blocks of ``frames`` frames (the stream's), then put
    its state back: call it before the stream starts, with no other thread pushing events. The
    notes are the channel's own instrument's (``key`` and a third above, at velocities 100 and 90):
    in live play the notes ready at start-up."""
    source = engine.source
    saved = snapshot(engine, skip=(source, engine.imap))
    out = np.zeros((frames, 2), np.float32)
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
    # the bank counts the voices playing each of its notes (the audio thread's side, as this is)
    users = None if source.bank is None else source.bank.users.copy()
    try:
        for at, kind, a, b in events:
            engine.push(kind, channel, a, b, f0 + at)
        for _ in range(BLOCKS):
            engine.process(out)
    finally:
        restore(saved)
        bank = source.bank  # a growable bank may have grown (its slots keep their numbers)
        if bank is not None:
            bank.users[:] = 0
            if users is not None:
                bank.users[: len(users)] = users
