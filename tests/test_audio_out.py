"""Audio output through PortAudio on a real JACK dummy server: devices, and events at their arrival time.

The engine plays ``HarmonicSource`` tones (a real, deterministic signal source) into a real
sounddevice stream; a JACK client records the stream's ports.
"""

import os
import random
import time

import numpy as np
import pytest
from engine_fixtures import HarmonicSource, assert_torch_free, make_engine

from sing_synth import events as ev
from sing_synth.audio_out import AudioOutput, find_device, match_device, output_devices
from sing_synth.errors import PortError
from sing_synth.midi_in import AudioClock
from sing_synth.testing.jack_server import Recorder, onsets, replays

RATE, PERIOD = 48000, 256


@pytest.fixture(scope="module")
def portaudio(jack_server):
    """PortAudio re-scanned after the server started (it scans host APIs once, at import)."""
    sd = pytest.importorskip("sounddevice")
    sd._terminate()
    sd._initialize()
    yield sd
    # Terminate before the server stops (PortAudio asserts at exit otherwise), and come back
    # without a JACK server for whatever runs next in this process.
    sd._terminate()
    env = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    os.environ.update(JACK_DEFAULT_SERVER=f"{jack_server.name}-gone", JACK_NO_START_SERVER="1")
    try:
        sd._initialize()
    finally:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_match_device_by_index_name_and_default():
    devices = [
        {"index": 0, "name": "HDA Intel PCH: ALC892 Analog", "default": False},
        {"index": 3, "name": "HDA Intel PCH: HDMI 0", "default": False},
        {"index": 7, "name": "system", "default": True},
    ]
    assert match_device(devices, None)["index"] == 7
    assert match_device(devices, "alc892")["index"] == 0
    assert match_device(devices, "3")["index"] == 3 and match_device(devices, 0)["index"] == 0
    with pytest.raises(PortError, match="ambiguous .*0 'HDA Intel PCH: ALC892 Analog', 3 'HDA Intel PCH: HDMI 0'"):
        match_device(devices, "hda intel")
    with pytest.raises(PortError, match="no audio output matches 'usb' \\(available: 0 'HDA"):
        match_device(devices, "usb")
    with pytest.raises(PortError, match="no audio output with index 5"):
        match_device(devices, 5)
    with pytest.raises(PortError, match="no audio output device found"):
        match_device([], None)


def test_jack_output_is_listed_and_found(portaudio):
    devices = output_devices()
    jack_devices = [d for d in devices if "JACK" in d["api"]]
    assert jack_devices, devices
    system = find_device("SYSTEM")
    assert system["rate"] == RATE and system["channels"] >= 2
    assert find_device(str(system["index"])) == system


def _arrival_run(seed: int):
    """One run of nine notes: (spread of their latencies in ms, the output's counters)."""
    source = HarmonicSource(RATE)
    for pitch in range(60, 69):
        for vclass in range(5):
            source.find(0, pitch, vclass)  # made now: HarmonicSource makes notes on first use
    engine = make_engine(source, rate=RATE, max_block=PERIOD)
    clock = AudioClock(RATE, delay_frames=PERIOD)
    audio = AudioOutput(engine, clock, find_device("system"), RATE, PERIOD)
    rec = Recorder()
    try:
        audio.start()
        rec.connect("PortAudio")
        # JACK's frame_time (the reference) comes from a delay-locked loop that settles over the
        # first second or so of a new server: early stamps drift by several ms
        time.sleep(2.0)
        rec.record(rec.client.frame_time, 4 * RATE)
        rng = random.Random(seed)
        stamps = []
        time.sleep(0.2)
        for i in range(9):
            t = time.perf_counter()
            engine.push(ev.NOTE_ON, 0, 60 + i, 100, clock.frame_at(t))
            stamps.append(rec.client.frame_time)  # the same instant on the JACK timeline
            time.sleep(0.03)
            engine.push(ev.NOTE_OFF, 0, 60 + i, 0, clock.frame_at(time.perf_counter()))
            time.sleep(0.3 + rng.uniform(0, PERIOD / RATE))  # the release fades out, then silence
        x = rec.wait(5)[:, 0]
    finally:
        audio.close()
        rec.close()
    found = onsets(x, gap=RATE // 50)
    assert len(found) == len(stamps), found
    latency = found - (np.array(stamps) - rec.start)
    error_ms = 1000 * (latency - np.median(latency)) / RATE
    print(
        f"latency {1000 * np.median(latency) / RATE:.2f} ms, spread (ms) {np.round(error_ms, 2)}; "
        f"xruns {audio.xruns}, clock resets {clock.resets}, gaps {rec.gaps}"
    )
    assert audio.callbacks > 0 and audio.errors == 0
    return error_ms, audio.xruns + rec.gaps


def test_events_sound_at_their_arrival_time_not_at_block_boundaries(portaudio):
    """Notes pushed at arbitrary times sound after a constant latency: placed to the sample, not to the block.

    The push times are read on JACK's own timeline (``frame_time``), which stays right when a
    loaded machine makes the dummy driver run late; a block-quantised synth would spread the
    latencies over a whole period. A run that the machine stalled (xruns or gaps in the
    recording: the timeline itself broke) is played again (``replays``); a clean run must pass.
    """
    period_ms = 1000 * PERIOD / RATE
    for attempt in replays():
        error_ms, damaged = _arrival_run(seed=attempt)
        if not damaged:
            break
    # block-quantised placement would spread these over a whole period (5.3 ms); arrival-time
    # placement keeps them within the callback's scheduling jitter
    assert np.abs(error_ms).max() < period_ms / 3, (error_ms, f"{damaged} xruns/gaps in the last of {attempt} runs")


def test_audio_path_modules_do_not_import_torch():
    assert_torch_free("midi_in", "audio_out", "cache", "cache_filler", "note_file", "live", "progress", "cli", "commands",
                      "wake")


def test_between_blocks_returns_just_after_a_block_and_records_each_block(portaudio, tmp_path):
    """Other threads start their work between two callbacks, at least ``ROOM`` before the next one;
    the timing records hold a row per block (context switches, voices, MIDI, PortAudio's flag)."""
    from sing_synth import timing
    from sing_synth.audio_out import ROOM

    source = HarmonicSource(RATE)
    source.find(0, 60, 4)
    engine = make_engine(source, rate=RATE, max_block=PERIOD)
    clock = AudioClock(RATE, delay_frames=PERIOD)
    timeline = timing.Timeline(str(tmp_path / "t.npz"), seconds=60, period=PERIOD / RATE)
    audio = AudioOutput(engine, clock, find_device("system"), RATE, PERIOD, timeline=timeline)
    returns = []
    try:
        assert not audio.between_blocks(timeout=0.02)  # no stream running: it gives up
        audio.start()
        time.sleep(0.3)
        engine.push(ev.NOTE_ON, 0, 60, 127)
        for _ in range(100):
            assert audio.between_blocks(timeout=1.0)
            returns.append(time.perf_counter())
            time.sleep(0.001 + 0.01 * random.random())
    finally:
        audio.close()
    timeline.save()
    rec = np.load(tmp_path / "t.npz")
    start, cost = rec["block_start"], rec["block_cost"]
    assert len(start) == audio.callbacks and len(rec["block_switches"]) == len(start)
    returns = np.array(returns)
    returns = returns[returns < start[-1]]  # the last ones may have no block after them (the stream stopped)
    i = np.searchsorted(start, returns)  # the block after each return
    assert len(returns) > 90 and (i > 0).all()
    # the block before had finished, and the next came at least ROOM later (this thread may be
    # preempted between the return and its clock reading on a busy machine: most, not all)
    after = returns >= start[i - 1] + cost[i - 1]
    room = start[i] - returns
    assert after.mean() > 0.9 and np.median(room) >= ROOM and (room >= ROOM / 2).mean() > 0.8, np.sort(room)[:10]
    assert rec["block_voices"].max() == 1 and rec["block_xrun"].dtype == np.bool_
    assert (rec["block_switches"] >= 0).all() and (rec["block_faults"] >= 0).all()
    # PortAudio's time of each block (JACK's frame time when its callback began) moves a period a block
    steps = np.diff(rec["block_pa"])
    assert abs(np.median(steps) - PERIOD / RATE) < 0.1 * PERIOD / RATE, steps[:10]
