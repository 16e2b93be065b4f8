"""MIDI event values, validation of raw bytes and mido messages, and a lock-free event queue.

MIDI is validated once, here, at the boundary: raw bytes from a port or messages from a file
become plain :class:`Event` values (or ``None`` for anything the synth ignores or that is
malformed). Nothing else in the engine parses MIDI.

The :class:`EventQueue` carries events from one producer thread (the rtmidi callback, or the
file renderer) to one consumer (the audio callback) without a lock: a preallocated ring of
mutable slots, where the producer fills a slot before publishing the new tail and the
consumer reads a slot before publishing the new head. Each publication is a single attribute
store, atomic under the GIL. No torch, no logging, no allocation beyond Python scalars.
"""

from __future__ import annotations

from typing import NamedTuple

# Event kinds (values of Event.kind)
NOTE_OFF = 0
NOTE_ON = 1
CONTROL = 2  # a = controller 0-127, b = value 0-127
PROGRAM = 3  # a = program 0-127
PITCH_BEND = 4  # a = 14-bit value 0-16383, 8192 = centre
RESET = 5  # system reset (0xFF on a port): every channel back to its initial state

KIND_NAMES = ("note_off", "note_on", "control", "program", "pitch_bend", "reset")
BEND_CENTER = 8192

# Controllers the engine knows (everything else is accepted and ignored)
CC_BANK_MSB = 0
CC_DATA_MSB = 6
CC_VOLUME = 7
CC_PAN = 10
CC_EXPRESSION = 11
CC_BANK_LSB = 32
CC_DATA_LSB = 38
CC_SUSTAIN = 64
CC_SOSTENUTO = 66
CC_SOFT = 67
CC_REVERB = 91  # reverb send level
CC_CHORUS = 93  # chorus send level
CC_NRPN_LSB = 98
CC_NRPN_MSB = 99
CC_RPN_LSB = 100
CC_RPN_MSB = 101
CC_ALL_SOUND_OFF = 120
CC_RESET_CONTROLLERS = 121
CC_ALL_NOTES_OFF = 123  # 124-127 (omni/mono/poly mode) imply all notes off too
# the controllers above, and the channel mode messages (120-127): a controller the instrument is
# told to use for something else (the morph's) must not be one of them
ENGINE_CCS = frozenset(
    (CC_BANK_MSB, CC_DATA_MSB, CC_VOLUME, CC_PAN, CC_EXPRESSION, CC_BANK_LSB, CC_DATA_LSB, CC_SUSTAIN, CC_SOSTENUTO,
     CC_SOFT, CC_REVERB, CC_CHORUS, CC_NRPN_LSB, CC_NRPN_MSB, CC_RPN_LSB, CC_RPN_MSB, *range(120, 128))
)  # fmt: skip

# Channel voice messages: status high nibble -> number of data bytes
_DATA_BYTES = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}

# System exclusive messages that reset a General MIDI synth (the data between F0 and F7; None: any
# device id): GM System On, GM2 System On, Roland's GS Reset, Yamaha's XG System On
_RESETS = (
    (0x7E, None, 0x09, 0x01),
    (0x7E, None, 0x09, 0x03),
    (0x41, None, 0x42, 0x12, 0x40, 0x00, 0x7F, 0x00, 0x41),
    (0x43, None, 0x4C, 0x00, 0x00, 0x7E, 0x00),
)


_RESET_LENGTH = max(len(pattern) for pattern in _RESETS)


def is_reset_sysex(data) -> bool:
    """Whether a system exclusive message's data (without F0 and F7) is a GM, GM2, GS or XG reset."""
    return any(
        len(data) == len(pattern) and all(p is None or p == d for p, d in zip(pattern, data)) for pattern in _RESETS
    )


class Event(NamedTuple):
    """One MIDI event the engine understands; ``time`` is in engine frames (< 0: as soon as possible)."""

    kind: int
    channel: int = 0
    a: int = 0
    b: int = 0
    time: float = -1.0

    def __repr__(self) -> str:
        name = KIND_NAMES[self.kind] if 0 <= self.kind < len(KIND_NAMES) else str(self.kind)
        return f"Event({name}, ch={self.channel}, a={self.a}, b={self.b}, time={self.time})"


def from_bytes(data, time: float = -1.0) -> Event | None:
    """Validate one complete MIDI message (a sequence of ints) into an Event, or ``None``.

    ``None`` means ignored (aftertouch, system common and real-time messages other than
    reset, system exclusive messages other than the GM/GM2/GS/XG resets) or malformed (wrong
    length, data byte above 127, missing status byte). A reset is a :data:`RESET`.
    A note-on with velocity 0 is a note-off, as the MIDI standard says.
    """
    n = len(data)
    if n == 0:
        return None
    status = data[0]
    if not isinstance(status, int) or status < 0x80 or status > 0xFF:
        return None
    if status == 0xFF:
        return Event(RESET, 0, 0, 0, time) if n == 1 else None
    if status == 0xF0:  # (a long one, a sample dump, is refused by its length: no copy, no scan)
        if not 2 <= n <= _RESET_LENGTH + 2 or data[n - 1] != 0xF7:
            return None
        return Event(RESET, 0, 0, 0, time) if is_reset_sysex(data[1 : n - 1]) else None
    high = status & 0xF0
    count = _DATA_BYTES.get(high)
    if count is None or n != count + 1:
        return None
    for i in range(1, n):
        v = data[i]
        if not isinstance(v, int) or v < 0 or v > 127:
            return None
    ch = status & 0x0F
    if high == 0x90:
        if data[2] == 0:
            return Event(NOTE_OFF, ch, data[1], 64, time)
        return Event(NOTE_ON, ch, data[1], data[2], time)
    if high == 0x80:
        return Event(NOTE_OFF, ch, data[1], data[2], time)
    if high == 0xB0:
        return Event(CONTROL, ch, data[1], data[2], time)
    if high == 0xC0:
        return Event(PROGRAM, ch, data[1], 0, time)
    if high == 0xE0:
        return Event(PITCH_BEND, ch, data[1] | (data[2] << 7), 0, time)
    return None  # polyphonic and channel aftertouch: not used by this instrument


def from_mido(msg, time: float = -1.0) -> Event | None:
    """The Event for a ``mido.Message`` (already range-checked by mido), or ``None`` if ignored."""
    t = msg.type
    if t == "note_on":
        if msg.velocity == 0:
            return Event(NOTE_OFF, msg.channel, msg.note, 64, time)
        return Event(NOTE_ON, msg.channel, msg.note, msg.velocity, time)
    if t == "note_off":
        return Event(NOTE_OFF, msg.channel, msg.note, msg.velocity, time)
    if t == "control_change":
        return Event(CONTROL, msg.channel, msg.control, msg.value, time)
    if t == "program_change":
        return Event(PROGRAM, msg.channel, msg.program, 0, time)
    if t == "pitchwheel":
        return Event(PITCH_BEND, msg.channel, msg.pitch + BEND_CENTER, 0, time)
    if t == "reset":
        return Event(RESET, 0, 0, 0, time)
    return None


class EventQueue:
    """Single-producer/single-consumer ring of events, lock-free under the GIL.

    The producer calls :meth:`push` (never blocks: a full queue drops the event and counts it
    in ``dropped``); the consumer calls :meth:`peek_time` and :meth:`pop_into`. Slots are
    preallocated lists that are overwritten in place.
    """

    def __init__(self, capacity: int = 4096):
        if capacity < 2:
            raise ValueError("EventQueue capacity must be at least 2")
        self.capacity = int(capacity)
        self._slots = [[0.0, 0, 0, 0, 0] for _ in range(self.capacity)]  # time, kind, ch, a, b
        self._head = 0  # next slot to read (written by the consumer only)
        self._tail = 0  # next slot to write (written by the producer only)
        self.dropped = 0

    def __len__(self) -> int:
        return (self._tail - self._head) % self.capacity

    def push(self, kind: int, channel: int, a: int, b: int, time: float = -1.0) -> bool:
        """Append an event (producer side); False if the queue was full and the event dropped."""
        tail = self._tail
        nxt = tail + 1 if tail + 1 < self.capacity else 0
        if nxt == self._head:
            self.dropped += 1
            return False
        slot = self._slots[tail]
        slot[0] = time
        slot[1] = kind
        slot[2] = channel
        slot[3] = a
        slot[4] = b
        self._tail = nxt  # publish after the slot is written
        return True

    def push_event(self, event: Event) -> bool:
        return self.push(event.kind, event.channel, event.a, event.b, event.time)

    def peek_time(self) -> float:
        """Time of the oldest event (consumer side); +inf when empty."""
        head = self._head
        if head == self._tail:
            return float("inf")
        return self._slots[head][0]

    def pop_into(self, dest: list) -> bool:
        """Copy the oldest event into ``dest[0:5]`` (time, kind, channel, a, b); False when empty."""
        head = self._head
        if head == self._tail:
            return False
        slot = self._slots[head]
        dest[0] = slot[0]
        dest[1] = slot[1]
        dest[2] = slot[2]
        dest[3] = slot[3]
        dest[4] = slot[4]
        self._head = head + 1 if head + 1 < self.capacity else 0  # free the slot after reading it
        return True

    def pop(self) -> Event | None:
        """The oldest event as an :class:`Event` (allocates: for tests and tools, not the audio path)."""
        tmp = [0.0, 0, 0, 0, 0]
        if not self.pop_into(tmp):
            return None
        return Event(int(tmp[1]), int(tmp[2]), int(tmp[3]), int(tmp[4]), tmp[0])

    def clear(self) -> None:
        """Drop everything (consumer side)."""
        self._head = self._tail
