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
Each block also records what the kernel counted for the audio thread inside the callback
(context switches, voluntary ones being waits for the GIL or a lock, involuntary ones
preemptions; page faults, ``getrusage(RUSAGE_THREAD)`` where there is one), the voices sounding,
the MIDI messages moved onto the engine's queue, PortAudio's xrun flag and the time PortAudio gave
the block (``currentTime``: when its own callback began, before ours).
The file is written once the stream is closed; ``bench/live.py`` reads it after a soak.
"""

from __future__ import annotations

import gc
import os
import time

try:
    import resource

    RUSAGE_THREAD = resource.RUSAGE_THREAD  # Linux
except (ImportError, AttributeError):
    resource = None

import numpy as np

ENV = "SING_SYNTH_TIMING"
THREADS = ("midi", "renderer", "status", "gc")  # the span kinds besides the audio callback


def _made(shape, dtype=np.float64) -> np.ndarray:
    """A zeroed array whose pages exist now: np.zeros leaves a large array's pages unmapped until first
    written, and the records are written a row at a time while playing, by the audio thread too: each
    new page would be a page fault in the callback."""
    a = np.zeros(shape, dtype)
    a.fill(0)
    return a


class Spans:
    """(start, duration) of up to ``capacity`` spans of one thread; later ones are counted, not kept."""

    def __init__(self, capacity: int):
        self.start = _made(capacity)
        self.length = _made(capacity)
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
        self.block_start = _made(blocks)
        self.block_late = _made(blocks)
        self.block_cost = _made(blocks)
        self.block_cpu = _made(blocks)  # the audio thread's CPU time in the callback: the rest is waiting
        # inside the callback: voluntary and involuntary context switches, minor and major page faults
        self.block_switches = _made((blocks, 2), np.int32)
        self.block_faults = _made((blocks, 2), np.int32)
        self.block_voices = _made(blocks, np.int16)
        self.block_midi = _made(blocks, np.int16)  # MIDI messages drained in the block
        self.block_xrun = _made(blocks, np.bool_)  # PortAudio's underflow/overflow flag
        # PortAudio's ``currentTime`` for the block: taken in its own callback before ours runs (on
        # JACK, the server's frame time at that moment); against ``block_start`` it tells the time
        # spent between PortAudio's entry and ours (the interpreter lock, sounddevice's wrapper)
        self.block_pa = _made(blocks)
        self.blocks = 0
        self.spans = {name: Spans(blocks if name == "midi" else 200_000) for name in THREADS}
        self._gc_t0 = 0.0
        self._cpu0 = 0.0
        self._usage0 = None

    def begin(self) -> None:
        """Audio thread, at the start of each callback."""
        self._cpu0 = time.thread_time()
        if resource is not None:
            self._usage0 = resource.getrusage(RUSAGE_THREAD)

    def block(self, t0: float, late: float, t1: float, xrun: bool = False, voices: int = 0, midi: int = 0,
              pa_time: float = 0.0) -> None:
        """Audio thread, at the end of each callback begun with :meth:`begin` at ``t0``."""
        cpu = time.thread_time() - self._cpu0
        i = self.blocks
        if i < len(self.block_start):
            self.block_start[i] = t0
            self.block_late[i] = late
            self.block_cost[i] = t1 - t0
            self.block_cpu[i] = cpu
            self.block_voices[i] = voices
            self.block_midi[i] = midi
            self.block_xrun[i] = xrun
            self.block_pa[i] = pa_time
            u0 = self._usage0
            if u0 is not None:
                u = resource.getrusage(RUSAGE_THREAD)
                self.block_switches[i, 0] = u.ru_nvcsw - u0.ru_nvcsw
                self.block_switches[i, 1] = u.ru_nivcsw - u0.ru_nivcsw
                self.block_faults[i, 0] = u.ru_minflt - u0.ru_minflt
                self.block_faults[i, 1] = u.ru_majflt - u0.ru_majflt
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
            "block_switches": self.block_switches[:n],
            "block_faults": self.block_faults[:n],
            "block_voices": self.block_voices[:n],
            "block_midi": self.block_midi[:n],
            "block_xrun": self.block_xrun[:n],
            "block_pa": self.block_pa[:n],
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
