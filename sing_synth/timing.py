"""Where a live session's time goes: per-block and per-thread records in preallocated arrays.

A diagnostic, off unless ``SING_SYNTH_TIMING`` names a file (``.npz``). Then the audio callback
records, for every block, when it started (``perf_counter``), how late that was against the
audio clock's lower envelope (the earliest starts: a block can only start late, from a busy
core or from waiting for the GIL), how long it ran and how much of that was its own CPU time
(the rest it waited: for the GIL, or for a core); the other Python threads that wake
while notes play (the MIDI callback when there is one, the renderer, the status loop, the
garbage collector) record each of their spans, which hold the GIL for their length but for
what they spend in C without it. Recording is a store into arrays made at start-up, each
written by one thread only: nothing is allocated, locked or written to disk while playing.
The file is written once the stream is closed; ``bench/live.py`` reads it after a soak.
"""

from __future__ import annotations

import gc
import os
import time

import numpy as np

ENV = "SING_SYNTH_TIMING"
THREADS = ("midi", "renderer", "status", "gc")  # the span kinds besides the audio callback


class Spans:
    """(start, duration) of up to ``capacity`` spans of one thread; later ones are counted, not kept."""

    def __init__(self, capacity: int):
        self.start = np.zeros(capacity)
        self.length = np.zeros(capacity)
        self.n = 0

    def add(self, t0: float, t1: float) -> None:
        i = self.n
        if i < len(self.start):
            self.start[i] = t0
            self.length[i] = t1 - t0
        self.n = i + 1


class Timeline:
    """The records of one session: ``blocks`` (start, lateness, cost) and a :class:`Spans` per thread."""

    def __init__(self, path: str, seconds: float = 3600.0, period: float = 256 / 48000):
        self.path = path
        blocks = int(seconds / period) + 1
        self.block_start = np.zeros(blocks)
        self.block_late = np.zeros(blocks)
        self.block_cost = np.zeros(blocks)
        self.block_cpu = np.zeros(blocks)  # the audio thread's CPU time in the callback: the rest is waiting
        self.blocks = 0
        self.spans = {name: Spans(blocks if name == "midi" else 200_000) for name in THREADS}
        self._gc_t0 = 0.0

    def block(self, t0: float, late: float, t1: float, cpu: float) -> None:
        """Audio thread, at the end of each callback (``cpu``: its ``thread_time`` spent in it)."""
        i = self.blocks
        if i < len(self.block_start):
            self.block_start[i] = t0
            self.block_late[i] = late
            self.block_cost[i] = t1 - t0
            self.block_cpu[i] = cpu
        self.blocks = i + 1

    def span(self, name: str, t0: float) -> None:
        """The thread ``name`` ran (holding the GIL) from ``t0`` until now."""
        self.spans[name].add(t0, time.perf_counter())

    def _gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        else:
            self.span("gc", self._gc_t0)

    def watch_gc(self) -> None:
        gc.callbacks.append(self._gc)

    def save(self) -> None:
        """Write the records (after the stream closed)."""
        if self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)
        n = min(self.blocks, len(self.block_start))
        arrays = {
            "block_start": self.block_start[:n],
            "block_late": self.block_late[:n],
            "block_cost": self.block_cost[:n],
            "block_cpu": self.block_cpu[:n],
        }
        for name, s in self.spans.items():
            k = min(s.n, len(s.start))
            arrays[f"{name}_start"], arrays[f"{name}_length"] = s.start[:k], s.length[:k]
        tmp = f"{self.path}.{os.getpid()}.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, self.path)


def from_env(period: float) -> Timeline | None:
    """A :class:`Timeline` when ``SING_SYNTH_TIMING`` names a file, else None."""
    path = os.environ.get(ENV)
    return Timeline(path, period=period) if path else None
