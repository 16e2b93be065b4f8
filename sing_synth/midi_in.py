"""MIDI input through python-rtmidi: API choice, port matching, time-stamped events.

Live play polls the input from the audio callback (``polled=True``): rtmidi's own thread (its
JACK process callback, or its ALSA thread) queues each message with its time stamp in C++, and
:meth:`MidiInput.drain`, called by the audio callback once per block after the clock's tick,
moves what arrived onto the engine's queue. No Python thread wakes for MIDI, so nothing of ours
runs in rtmidi's real-time JACK callback and no second thread competes with the audio callback
for the GIL. Otherwise (``polled=False``) a Python callback on rtmidi's thread does the same for
each message as it arrives.
Either way each message is stamped with its time, converted to an engine frame with the audio
clock (arrival time plus a constant delay of one block, so an event lands at the matching
sample offset instead of at the next block boundary) and pushed on the engine's lock-free
queue. Message times come from rtmidi's delta times anchored to the wall clock: by the
callback, at the earliest delivery seen (the backend's own time stamps minus the jitter of
waking the Python thread); when polled, between the poll that found the message and the one
before it (it arrived in between), at the latest lower bound, so events keep their spacing
and a message is placed one block after its arrival. JACK MIDI through rtmidi 5 stamps all the
events of one JACK period with the same time (measured: deltas are whole periods), so on JACK
the sub-period position is lost before it reaches us and the latency varies by up to one JACK
period; on ALSA and CoreMIDI it is constant. With the callback, messages that waited while the
callback handled the previous one (a chord delivered in one burst) keep the burst's time, so a
chord's notes start on the same sample.
One thread produces on the engine's queue while a port is open (the audio thread when polled,
else rtmidi's); the main thread pushes (all notes off when a keyboard is unplugged) only after
:meth:`MidiInput.detach`, which returns once the audio thread is out of :meth:`MidiInput.drain`.
"""

from __future__ import annotations

import os
import sys
import time

import rtmidi

from . import events as ev
from .errors import PortError

APIS = {"alsa": "API_LINUX_ALSA", "jack": "API_UNIX_JACK", "coremidi": "API_MACOSX_CORE", "windows": "API_WINDOWS_MM"}
CLIENT_NAME = "sing-synth"
ALSA_SEQ = "/dev/snd/seq"
BURST_SLACK = 0.001  # s: from our callback's return to rtmidi stamping the next waiting message (preemption included)
QUEUE_SIZE = 1024  # messages rtmidi holds between two polls (its default, 100, is a chord and a few bends)


def open_api(api: str | None = None, queue_size: int = QUEUE_SIZE) -> tuple[str, rtmidi.MidiIn]:
    """An rtmidi input client on an API by short name, or on the first API that works here."""
    names = [api] if api else list(APIS)
    compiled = set(rtmidi.get_compiled_api())
    errors = []
    for name in names:
        if name not in APIS:
            raise PortError(f"unknown MIDI API {name!r}: use one of {', '.join(APIS)}", "midi_api")
        code = getattr(rtmidi, APIS[name])
        if code not in compiled:
            errors.append(f"{name}: not built into python-rtmidi")
            continue
        if name == "alsa" and not api and sys.platform.startswith("linux") and not os.path.exists(ALSA_SEQ):
            errors.append(f"alsa: no sequencer ({ALSA_SEQ})")  # probing it would only print ALSA's complaint
            continue
        try:  # raises where the API has no server (e.g. no ALSA sequencer)
            return name, rtmidi.MidiIn(code, name=CLIENT_NAME, queue_size_limit=queue_size)
        except Exception as exc:  # rtmidi's SystemError / RtMidiError subclasses
            errors.append(f"{name}: {(str(exc).strip().splitlines() or [type(exc).__name__])[0]}")
    raise PortError(
        "no MIDI system available (" + "; ".join(errors) + "); start ALSA's sequencer or a JACK server, "
        "or choose another MIDI API",
        "midi_api",
    )


def match_port(names: list[str], query: str) -> int:
    """Index of the one port whose name contains ``query`` (case-insensitive; an exact name wins)."""
    exact = [i for i, n in enumerate(names) if n.lower() == query.lower()]
    found = exact or [i for i, n in enumerate(names) if query.lower() in n.lower()]
    listing = ", ".join(repr(n) for n in names) or "none"
    if not found:
        raise PortError(f"no MIDI input matches {query!r} (available: {listing})", "midi_in")
    if len(found) > 1:
        shown = ", ".join(repr(names[i]) for i in found)
        raise PortError(f"MIDI input {query!r} is ambiguous ({shown}); give more of its name", "midi_in")
    return found[0]


def check_choice(query: str | None, virtual: bool = False, channel: int | None = None) -> None:
    """An input is named or virtual, and the channel (1-16) is valid: raises PortError otherwise."""
    if not virtual and not query:
        raise PortError("no MIDI input chosen: name one, or open a virtual input", "midi_in")
    if channel is not None and not 1 <= channel <= 16:
        raise PortError(f"MIDI channel {channel} out of range: use 1-16", "channel")


def check_input(query: str | None, virtual: bool = False, api: str | None = None, channel: int | None = None) -> str:
    """Validate the MIDI choices before a slow start-up; the full name of the port that will open."""
    check_choice(query, virtual, channel)
    _, midi = open_api(api)
    try:
        names = midi.get_ports()
        return CLIENT_NAME if virtual else names[match_port(names, query)]
    finally:
        midi.delete()


class AudioClock:
    """Maps wall-clock time to engine frames for the MIDI thread; the audio callback ticks it per block.

    The anchor (wall time of engine frame 0) follows the lower envelope of the callbacks' start
    times: callbacks can only start late, so the earliest is the truest, and the scheduling
    jitter of the audio thread does not move events. The envelope rises slowly (200 ppm, for a
    sound card whose clock runs slower than the system's) and is reset after an xrun or a gap.
    An event stamped at wall time ``t`` is placed at ``(t - anchor) * rate + delay`` frames, so
    its latency is the constant ``delay`` plus what the MIDI transport adds.
    """

    LEAK = 0.0002

    def __init__(self, rate: int, delay_frames: int):
        self.rate = rate
        self.delay = delay_frames
        self.anchor: float | None = None  # one float, replaced whole: an atomic store
        self.resets = 0  # re-anchorings after an xrun or a late block

    def tick(self, frame: int, period: float, xrun: bool = False) -> None:
        """Audio thread, at the start of each block of ``period`` seconds starting at engine ``frame``."""
        anchor = time.perf_counter() - frame / self.rate
        old = self.anchor
        if old is None or anchor <= old:
            self.anchor = anchor
        elif xrun or anchor - old > period:
            self.anchor = anchor
            self.resets += 1
        else:
            self.anchor = min(anchor, old + self.LEAK * period)

    def frame_at(self, t: float) -> float:
        """The engine frame for an event stamped at ``perf_counter()`` time ``t``."""
        anchor = self.anchor
        if anchor is None:  # no block yet: as soon as possible
            return -1.0
        return (t - anchor) * self.rate + self.delay


class MidiInput:
    """One input port (by name, or a virtual port) feeding an engine, with reconnection."""

    def __init__(
        self,
        engine,
        clock: AudioClock,
        query: str | None = None,
        virtual: bool = False,
        api: str | None = None,
        channel: int | None = None,
        polled: bool = False,
    ):
        check_choice(query, virtual, channel)
        self.engine, self.clock = engine, clock
        self.polled = polled  # True: the audio callback calls drain(); False: rtmidi's thread calls back
        self.api, self.midi = open_api(api)
        self.midi.ignore_types(sysex=False, timing=True, active_sense=True)  # sysex: the GM/GS resets
        self.virtual = virtual
        self.channel = None if channel is None else channel - 1
        names = [] if virtual else self.midi.get_ports()
        self.name = CLIENT_NAME if virtual else names[match_port(names, query)]
        self.is_open = self.listening = False
        self.received = 0
        self.ignored = 0
        self.reconnects = 0
        self._stream_time = 0.0  # sum of rtmidi's delta times
        self._anchor = None  # wall time of stream time 0, from the earliest delivery
        self._last_stamp = 0.0  # wall time given to the previous message
        self._busy_until = 0.0  # when the previous callback returned (plus BURST_SLACK)
        self.timeline = None  # a sing_synth.timing.Timeline, or None
        self._polled_at = None  # when drain() last ran (None: not since the port opened)
        self._lo = self._hi = 0.0  # polled: the window the anchor lies in
        self._draining = False  # the audio thread is inside drain()
        self._get = self.midi.get_message
        self._open()

    def _open(self) -> None:
        try:
            if self.virtual:
                self.midi.open_virtual_port(CLIENT_NAME)
            else:
                self.midi.open_port(match_port(self.midi.get_ports(), self.name))
        except Exception as exc:
            raise PortError(f"cannot open MIDI input {self.name!r}: {exc}", "midi_in") from None
        self._anchor = self._polled_at = None
        if not self.polled:
            self.midi.set_callback(self._callback)
        self.is_open = self.listening = True

    def _callback(self, message, data=None) -> None:
        """rtmidi's thread: validate, stamp, enqueue. Nothing else."""
        now = time.perf_counter()
        data, delta = message
        self._stream_time += delta
        anchor = now - self._stream_time
        # delivery can only be late: the earliest anchor is the best; drift slowly (1 ms/s) allowed
        if self._anchor is None or anchor < self._anchor or anchor - self._anchor > 0.001 * delta + 0.05:
            self._anchor = anchor
        stamp = self._anchor + self._stream_time
        if stamp <= self._busy_until:
            # Stamped while this callback was still handling the previous message: a burst that
            # waited for us (rtmidi's JACK backend stamps each message just before its callback).
            # It arrived with the previous one: a chord's notes start on the same sample.
            stamp = self._last_stamp
        self._last_stamp = stamp
        self._push(data, stamp)
        self._busy_until = time.perf_counter() + BURST_SLACK
        if self.timeline is not None:
            self.timeline.span("midi", now)

    def _push(self, data, stamp: float) -> None:
        event = ev.from_bytes(data)
        if event is None or (self.channel is not None and event.kind != ev.RESET and event.channel != self.channel):
            self.ignored += 1
        else:
            self.received += 1
            self.engine.push(event.kind, event.channel, event.a, event.b, self.clock.frame_at(stamp))

    def drain(self, budget: int = 64) -> None:
        """Audio thread, once per block after the clock's tick (``polled``): move up to ``budget``
        messages from rtmidi's queue onto the engine's; later ones wait for the next block.
        Nothing blocks: rtmidi's queue is a lock-free ring, and an empty one costs one call."""
        self._draining = True  # before reading ``listening``: detach() waits for this to clear
        if self.listening:
            now = time.perf_counter()
            before, self._polled_at = self._polled_at, now
            get = self._get
            for _ in range(budget):
                message = get()
                if message is None:
                    break
                data, delta = message
                stream = self._stream_time = self._stream_time + delta
                # it arrived after the previous poll and before this one: the anchor lies in that
                # window, and in every earlier message's; take the earliest it can be (the latest
                # lower bound), and start again from this window if they stopped overlapping
                lo = before - stream if before is not None else -1e300
                hi = now - stream
                if self._anchor is None or lo > self._hi or hi < self._lo:
                    self._lo, self._hi = lo, hi
                else:
                    self._lo, self._hi = max(self._lo, lo), min(self._hi, hi)
                self._anchor = anchor = self._lo if self._lo > -1e300 else self._hi
                self._push(data, anchor + stream)
        else:
            self._polled_at = None
        self._draining = False

    def poll(self) -> str | None:
        """Main thread, about once a second: notice an unplugged keyboard and its return."""
        if self.virtual:
            return None
        try:
            present = self.name in self.midi.get_ports()
        except Exception:
            present = False
        if self.is_open and not present:
            self.close()
            for ch in range(16):  # the port is closed: the main thread is the only producer now
                self.engine.push(ev.CONTROL, ch, ev.CC_SUSTAIN, 0)
                self.engine.push(ev.CONTROL, ch, ev.CC_ALL_NOTES_OFF, 0)
            return f"MIDI input {self.name!r} disappeared: notes released, waiting for it to come back"
        if not self.is_open and present:
            self._open()
            self.reconnects += 1
            return f"MIDI input {self.name!r} is back"
        return None

    def detach(self) -> None:
        """Stop delivering messages (the callback is removed, or the audio thread has left drain();
        the port stays, so the JACK graph does not change under a running stream). Afterwards the
        caller may push on the queue."""
        if self.listening:
            if not self.polled:
                self.midi.cancel_callback()
            self.listening = False
            deadline = time.monotonic() + 1.0  # a stream that stopped never comes back to clear it
            while self._draining and time.monotonic() < deadline:
                time.sleep(0.0005)

    def close(self) -> None:
        if self.is_open:
            self.detach()  # remove the callback first, then close
            self.midi.close_port()
            self.is_open = False

    def shutdown(self) -> None:
        """Close the port and leave the MIDI system (the client disappears from JACK's graph)."""
        self.close()
        self.midi.delete()


def list_inputs(api: str | None = None) -> tuple[str, list[str]]:
    """The API used and the names of its MIDI inputs."""
    name, midi = open_api(api)
    try:
        return name, midi.get_ports()
    finally:
        midi.delete()
