"""MIDI input on real JACK MIDI ports: matching by name, events on the queue, unplug and replug."""

import time

import pytest
import rtmidi

from sing_synth import events as ev
from sing_synth.errors import PortError
from sing_synth.midi_in import AudioClock, MidiInput, match_port, open_api


class QueueEngine:
    """Only the engine's input side (its real lock-free queue): no audio is made in this test."""

    def __init__(self):
        self.queue = ev.EventQueue(64)

    def push(self, kind, channel, a=0, b=0, time=-1.0):
        return self.queue.push(kind, channel, a, b, time)


def keyboard(name):
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=name)
    out.open_virtual_port(name)
    return out


def test_match_port_none_one_ambiguous():
    names = ["Keystation 49 MIDI 1", "Keystation 61 MIDI 1", "Nord Stage:out"]
    assert match_port(names, "nord") == 2
    assert match_port(names, "keystation 61") == 1
    with pytest.raises(PortError, match="ambiguous .*'Keystation 49 MIDI 1', 'Keystation 61 MIDI 1'"):
        match_port(names, "KEYSTATION")
    with pytest.raises(PortError, match="no MIDI input matches 'piano' \\(available: 'Keystation 49"):
        match_port(names, "piano")
    assert match_port(["a", "ab"], "a") == 0  # an exact name wins


def test_unknown_api_and_missing_choice():
    with pytest.raises(PortError, match="unknown MIDI API 'beos'"):
        open_api("beos")


def test_events_arrive_and_unplugged_keyboards_are_released(jack_server):
    engine = QueueEngine()
    clock = AudioClock(48000, delay_frames=256)
    clock.tick(0, 256 / 48000)  # an audio block started now: events are stamped after it
    kbd = keyboard("Keystation")
    time.sleep(0.2)
    midi = MidiInput(engine, clock, "keystation", api="jack", channel=1)
    try:
        assert "Keystation" in midi.name
        kbd.send_message([0x90, 60, 100])
        kbd.send_message([0x91, 61, 100])  # channel 2: filtered out
        kbd.send_message([0x90, 200, 100])  # malformed: ignored, never crashes
        deadline = time.monotonic() + 2
        while len(engine.queue) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        event = engine.queue.pop()
        assert (event.kind, event.channel, event.a, event.b) == (ev.NOTE_ON, 0, 60, 100)
        assert 256 < event.time < 256 + 2 * 48000 and engine.queue.pop() is None
        assert midi.ignored == 2
        kbd.close_port()
        kbd.delete()  # unplugged: the JACK client goes away
        time.sleep(0.3)
        assert "disappeared" in midi.poll()
        released = [engine.queue.pop() for _ in range(32)]
        assert {(e.channel, e.a) for e in released if e.a == ev.CC_ALL_NOTES_OFF} == {(c, 123) for c in range(16)}
        kbd = keyboard("Keystation")
        time.sleep(0.3)
        assert "is back" in midi.poll() and midi.reconnects == 1
    finally:
        midi.close()
        kbd.delete()


def test_polled_input_is_drained_by_the_audio_thread_with_spaced_times(jack_server):
    """``polled=True``: no Python callback; a thread standing for the audio callback ticks the
    clock and drains once per block. Events keep their spacing (one block from arrival), the
    unplug-and-replug path waits for that thread to leave drain() before the main thread pushes."""
    import threading

    engine = QueueEngine()
    period = 256 / 48000
    clock = AudioClock(48000, delay_frames=256)
    kbd = keyboard("Keystation")
    time.sleep(0.2)
    midi = MidiInput(engine, clock, "keystation", api="jack", polled=True)
    stop = threading.Event()
    blocks = [0]

    def audio_thread():
        while not stop.is_set():
            clock.tick(256 * blocks[0], period)
            midi.drain()
            blocks[0] += 1
            time.sleep(max(0.0, clock.anchor + 256 * blocks[0] / 48000 - time.perf_counter()))

    thread = threading.Thread(target=audio_thread, daemon=True)
    thread.start()
    try:
        time.sleep(0.1)
        kbd.send_message([0x90, 60, 100])
        time.sleep(0.2)
        kbd.send_message([0x80, 60, 0])
        deadline = time.monotonic() + 2
        while len(engine.queue) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        on, off = engine.queue.pop(), engine.queue.pop()
        assert (on.kind, on.a, off.kind, off.a) == (ev.NOTE_ON, 60, ev.NOTE_OFF, 60)
        assert 0 < on.time <= 256 * blocks[0] + 256
        assert abs((off.time - on.time) - 0.2 * 48000) < 3 * 256  # spacing kept within a few periods
        kbd.close_port()
        kbd.delete()
        time.sleep(0.3)
        assert "disappeared" in midi.poll() and not midi._draining
        released = [engine.queue.pop() for _ in range(32)]
        assert {(e.channel, e.a) for e in released if e.a == ev.CC_ALL_NOTES_OFF} == {(c, 123) for c in range(16)}
        kbd = keyboard("Keystation")
        time.sleep(0.3)
        assert "is back" in midi.poll()
        kbd.send_message([0x90, 62, 100])
        deadline = time.monotonic() + 2
        while len(engine.queue) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.queue.pop().a == 62
    finally:
        stop.set()
        thread.join(2)
        midi.close()
        kbd.delete()
