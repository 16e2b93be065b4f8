"""Event values: validation of raw MIDI bytes and mido messages, and the lock-free SPSC queue."""

from __future__ import annotations

import threading

import mido
import pytest

from sing_synth import events as ev
from sing_synth.events import Event, EventQueue, from_bytes, from_mido


@pytest.mark.parametrize(
    "data, expected",
    [
        ([0x90, 60, 100], Event(ev.NOTE_ON, 0, 60, 100)),
        ([0x9F, 127, 1], Event(ev.NOTE_ON, 15, 127, 1)),
        ([0x93, 60, 0], Event(ev.NOTE_OFF, 3, 60, 64)),  # velocity 0 is a note-off
        ([0x80, 60, 30], Event(ev.NOTE_OFF, 0, 60, 30)),
        ([0xB1, 64, 127], Event(ev.CONTROL, 1, 64, 127)),
        ([0xC9, 5], Event(ev.PROGRAM, 9, 5, 0)),
        ([0xE0, 0x00, 0x40], Event(ev.PITCH_BEND, 0, 8192, 0)),
        ([0xE0, 0x7F, 0x7F], Event(ev.PITCH_BEND, 0, 16383, 0)),
        ([0xE2, 0x00, 0x00], Event(ev.PITCH_BEND, 2, 0, 0)),
        ([0xFF], Event(ev.RESET, 0, 0, 0)),
    ],
)
def test_valid_messages(data, expected):
    assert from_bytes(data) == expected
    assert from_bytes(bytes(data), time=12.5).time == 12.5


@pytest.mark.parametrize(
    "data",
    [
        [],
        [60, 100],  # no status byte
        [0x90, 60],  # too short
        [0x90, 60, 100, 1],  # too long
        [0x90, 128, 100],  # data byte out of range
        [0xB0, 7, 200],
        [0xC0, 1, 2],
        [0xF0, 0x7E, 0xF7],  # sysex
        [0xF8],  # clock
        [0xFE],  # active sensing
        [0xA0, 60, 10],  # polyphonic aftertouch: not used
        [0xD0, 10],  # channel aftertouch: not used
        [0x90, -1, 10],
        ["x", 1, 2],
    ],
)
def test_ignored_or_malformed_messages(data):
    assert from_bytes(data) is None


def test_mido_messages():
    assert from_mido(mido.Message("note_on", channel=2, note=61, velocity=0)) == Event(ev.NOTE_OFF, 2, 61, 64)
    assert from_mido(mido.Message("note_on", note=61, velocity=5), time=3) == Event(ev.NOTE_ON, 0, 61, 5, 3)
    assert from_mido(mido.Message("pitchwheel", channel=1, pitch=-8192)) == Event(ev.PITCH_BEND, 1, 0, 0)
    assert from_mido(mido.Message("pitchwheel", pitch=8191)).a == 16383
    assert from_mido(mido.Message("program_change", program=40)).a == 40
    assert from_mido(mido.Message("control_change", control=10, value=3)) == Event(ev.CONTROL, 0, 10, 3)
    assert from_mido(mido.Message("reset")).kind == ev.RESET
    assert from_mido(mido.Message("aftertouch", value=3)) is None
    assert from_mido(mido.Message("sysex", data=[1, 2])) is None
    # bytes and mido agree on every message mido can parse
    for msg in (mido.Message("note_on", note=3, velocity=9), mido.Message("control_change", channel=5, control=121)):
        assert from_bytes(msg.bytes()) == from_mido(msg)


def test_queue_is_fifo_and_drops_when_full():
    q = EventQueue(4)
    assert q.peek_time() == float("inf") and q.pop() is None
    for k in range(3):
        assert q.push(ev.NOTE_ON, 0, 60 + k, 100, float(k))
    assert not q.push(ev.NOTE_ON, 0, 99, 100, 9.0) and q.dropped == 1 and len(q) == 3
    assert q.peek_time() == 0.0
    assert [q.pop().a for _ in range(3)] == [60, 61, 62]
    assert q.pop() is None
    for k in range(10):  # wraps around
        assert q.push_event(Event(ev.CONTROL, 1, k, k, k))
        assert q.pop() == Event(ev.CONTROL, 1, k, k, k)
    with pytest.raises(ValueError):
        EventQueue(1)


def test_queue_between_two_threads_loses_nothing_and_keeps_order():
    """A real producer thread against a consumer polling like an audio callback."""
    q = EventQueue(256)
    total = 20000
    received: list[int] = []

    def produce():
        k = 0
        while k < total:
            if q.push(ev.NOTE_ON, k % 16, k % 128, 1 + k % 127, float(k)):
                k += 1

    thread = threading.Thread(target=produce)
    thread.start()
    slot = [0.0, 0, 0, 0, 0]
    while len(received) < total:
        while q.pop_into(slot):
            assert slot[2] == int(slot[0]) % 16 and slot[3] == int(slot[0]) % 128
            received.append(int(slot[0]))
    thread.join()
    assert received == list(range(total))
