"""Audio output: a sounddevice (PortAudio) stream around ``Engine.process``.

The callback contract (DESIGN.md section 3, and sounddevice's ``Stream`` documentation): the
callback runs on PortAudio's real-time thread and must fill the whole output buffer on time.
It does exactly four things: tick the :class:`~sing_synth.midi_in.AudioClock` with the
block's first engine frame (arrival times become engine frames with it, one block ahead, so
every event lands at its own sample offset with a constant latency), move what rtmidi queued
since the last block onto the engine's queue (a polled :class:`~sing_synth.midi_in.MidiInput`;
a bounded number of messages, none waited for), let the engine drain its lock-free event
queue and mix pre-rendered notes into ``outdata``, and update plain counters (xruns from
PortAudio's status flags, callback load; with ``SING_SYNTH_TIMING``, one row of preallocated
arrays per block, see :mod:`sing_synth.timing`). No torch, no disk, no printing or logging, no
lock, no NumPy allocation; the engine's work is bounded by the polyphony limit and by its
per-block event budget, whatever arrives on MIDI. Should the engine ever raise, the block is
silenced and counted in ``errors`` instead of stopping the stream.

The callback also leaves the times it started and ended: the other threads that work while notes
play (the status loop, the renderer) call :meth:`AudioOutput.between_blocks` first, so their
Python work starts just after a block, with the gap to the next one to itself, and the callback
finds the GIL free when its turn comes.

Before play, :meth:`AudioOutput.start` can warm up the note path in the callback's own thread: the
stream's first blocks are silence while the callback runs a :class:`~sing_synth.warmup.WarmUp`
of the engine, a block each (no clock tick, no MIDI, no timing row), then the engine is put back
as it was and ``start`` returns. The first note then finds the thread's stack, its malloc arena and
OpenBLAS's buffer, which a warm-up in another thread would not touch, already used.
"""

from __future__ import annotations

import time

from .errors import PortError
from .warmup import WarmUp

ROOM = 0.001  # s: the least time to the next block for another thread to start its Python work
WARM_TIMEOUT = 5.0  # s: the most start() waits for the warm-up's blocks (a stream that does not call back)


def _sd():
    try:
        import sounddevice
    except OSError as exc:  # the wheel does not bundle PortAudio on Linux
        raise PortError(f"PortAudio is not available ({exc}); install libportaudio2") from None
    return sounddevice


def output_devices() -> list[dict]:
    sd = _sd()
    apis = sd.query_hostapis()
    return [
        {
            "index": i,
            "name": d["name"],
            "api": apis[d["hostapi"]]["name"],
            "channels": d["max_output_channels"],
            "rate": d["default_samplerate"],
            "default": i == sd.default.device[1],
        }
        for i, d in enumerate(sd.query_devices())
        if d["max_output_channels"] > 0
    ]


def match_device(devices: list[dict], query: str | int | None) -> dict:
    """An output device by index, or by case-insensitive substring of its name; None: the default."""
    if not devices:
        raise PortError("no audio output device found; start a sound server (e.g. JACK) or check the sound card")
    if query is None or query == "":
        default = [d for d in devices if d["default"]]
        return default[0] if default else devices[0]
    if isinstance(query, int) or str(query).strip().isdigit():
        for d in devices:
            if d["index"] == int(query):
                return d
        listing = ", ".join(f"{d['index']} {d['name']!r}" for d in devices)
        raise PortError(f"no audio output with index {query} (available: {listing})", "device")
    exact = [d for d in devices if d["name"].lower() == str(query).lower()]
    found = exact or [d for d in devices if str(query).lower() in d["name"].lower()]
    if len(found) == 1:
        return found[0]
    listing = ", ".join(f"{d['index']} {d['name']!r}" for d in (found or devices))
    if not found:
        raise PortError(f"no audio output matches {query!r} (available: {listing})", "device")
    raise PortError(f"audio output {query!r} is ambiguous ({listing}); give its index or more of its name", "device")


def find_device(query: str | int | None) -> dict:
    """The output device ``query`` (index, name part, or None: the default) among those PortAudio sees now."""
    return match_device(output_devices(), query)


class AudioOutput:
    """A stereo float32 output stream whose callback runs ``engine.process``."""

    def __init__(self, engine, clock, device: dict, rate: int, blocksize: int, latency="low", timeline=None):
        sd = _sd()
        self.engine, self.clock = engine, clock
        self.timeline = timeline  # a sing_synth.timing.Timeline, or None
        self.midi = None  # a polled MidiInput: drained here once per block, after the clock's tick
        self.rate, self.blocksize = rate, blocksize
        self.xruns = 0  # blocks PortAudio flagged as output underflow/overflow
        self.errors = 0
        self.load = 0.0
        self.max_load = 0.0
        self.callbacks = 0
        self._period = blocksize / rate
        self._started = self._ended = 0.0  # perf_counter at the last callback's start and end
        self._messages = 0  # MIDI messages received and ignored, as of the last block (timing only)
        self._warming = None  # a WarmUp the callback runs instead of playing, while start() waits
        try:
            self.stream = sd.OutputStream(
                samplerate=rate,
                blocksize=blocksize,
                device=device["index"],
                channels=2,
                dtype="float32",
                latency=latency,
                callback=self._callback,
            )
        except Exception as exc:  # sounddevice.PortAudioError
            raise PortError(f"cannot open audio output {device['name']!r} at {rate} Hz: {exc}", "device") from None

    def _callback(self, outdata, frames, time_info, status) -> None:
        t0 = time.perf_counter()
        self._started = t0
        timeline = self.timeline
        if timeline is not None:
            timeline.begin()
        xrun = status.output_underflow or status.output_overflow
        if xrun:
            self.xruns += 1
        warming = self._warming
        if warming is not None:  # before play: silence, and a block of the warm-up in this thread
            outdata.fill(0.0)
            try:
                warming.step()
            except Exception:  # as below: the stream goes on
                self.errors += 1
            self._ended = time.perf_counter()
            return
        frame = self.engine.frame
        self.clock.tick(frame, self._period, xrun)
        midi = self.midi
        try:
            if midi is not None:
                midi.drain()
            self.engine.process(outdata)
        except Exception:  # never let the stream die: silence this block, count it
            outdata.fill(0.0)
            self.errors += 1
        self.callbacks += 1
        t1 = time.perf_counter()
        load = (t1 - t0) / self._period
        self.load = load
        if load > self.max_load:
            self.max_load = load
        if timeline is not None:
            messages = midi.received + midi.ignored if midi is not None else 0
            timeline.block(t0, t0 - self.clock.anchor - frame / self.rate, t1, xrun, self.engine.active_voices,
                           messages - self._messages, time_info.currentTime)
            self._messages = messages
        self._ended = t1  # last: between_blocks() lets other threads start from here

    def between_blocks(self, room: float = ROOM, timeout: float = 0.1) -> bool:
        """Other threads, before a piece of Python work while the stream plays: wait until the
        callback has finished and the next one is at least ``room`` seconds away (True), or for
        ``timeout`` seconds (False: the stream stopped, or its blocks keep coming late). Work
        started then has the gap between two blocks to itself, instead of holding the GIL when
        the callback wants it. Reads two times the callback writes; takes no lock."""
        period = self._period
        deadline = time.perf_counter() + timeout
        while True:
            now = time.perf_counter()
            started = self._started
            following = started + period  # when the next block should start
            if self._ended >= started and following - now >= room:
                return True
            if now >= deadline:
                return False
            if following < now:  # late, or stopped: look again soon
                following = now
            # just after the next block should have finished (its start and the last one's run time)
            wake = following + (self._ended - started if self._ended >= started else 0.0) + 0.0002
            time.sleep(max(0.0002, min(wake, deadline) - now))

    @property
    def latency(self) -> float:
        """PortAudio's output latency plus the one block of MIDI scheduling delay, in seconds."""
        return float(self.stream.latency) + self._period

    def start(self, warm_up: WarmUp | None = None) -> bool:
        """Start the stream; with ``warm_up`` (a :class:`~sing_synth.warmup.WarmUp` of the engine), first
        run it in the callback (see the module docstring) and return once the engine is put back: False
        when the stream had not run its blocks within ``WARM_TIMEOUT`` (the rest are dropped)."""
        self._warming = warm_up
        self.stream.start()
        if warm_up is None:
            return True
        ran = warm_up.finish(WARM_TIMEOUT)
        self._warming = None
        return ran

    def close(self) -> None:
        self.stream.stop()
        self.stream.close()
