"""The warm-up of the note path (sing_synth/warmup.py): no sample changes, and the first note's block
takes no page fault after it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from engine_fixtures import SINE, HarmonicSource, assert_torch_free, make_engine, note, run_engine

from sing_synth import events as ev
from sing_synth.effects import EffectSettings
from sing_synth.warmup import WarmUp, warm_up

BLOCK = 256
SONG = [
    *note(0.01, 60, 100, 1.2),
    *note(0.13, 64, 90, 0.4),
    *note(0.31, 67, 60, 0.9, channel=1),
    (0.35, ev.CONTROL, 0, ev.CC_CHORUS, 90),
    (0.5, ev.PITCH_BEND, 0, 9000, 0),
    (0.62, ev.CONTROL, 0, ev.CC_SUSTAIN, 127),
    *note(0.7, 72, 127, 0.2),
    (1.0, ev.CONTROL, 0, ev.CC_SUSTAIN, 0),
]


def engines(effects) -> tuple:
    return tuple(
        make_engine(HarmonicSource(), polyphony=8, max_block=BLOCK, effects=effects, instrument=SINE) for _ in range(2)
    )


@pytest.mark.parametrize("effects", [EffectSettings(), None], ids=["effects", "dry"])
def test_a_warmed_engine_plays_the_samples_of_one_never_warmed(effects):
    cold, warm = engines(effects)
    warm_up(warm, BLOCK)
    assert warm.frame == 0 and warm.pool.n == 0 and warm.notes_played == 0 and len(warm.queue) == 0
    assert not warm.source.bank.users.any()  # the warm-up's voices let go of their notes
    a, b = run_engine(cold, SONG, 1.6, BLOCK), run_engine(warm, SONG, 1.6, BLOCK)
    assert np.abs(a).max() > 0.05
    np.testing.assert_array_equal(a, b)


def test_a_warm_up_while_notes_sound_changes_nothing_either():
    """The state is put back whatever it was: voices held and decaying, the reverb's tail, pedals."""
    cold, warm = engines(EffectSettings())
    first = [e for e in SONG if e[0] < 0.65]
    rest = [(t - 0.65, *e) for t, *e in SONG if t >= 0.65]
    a = [run_engine(cold, first, 0.65, BLOCK), run_engine(cold, rest, 0.6, BLOCK)]
    b = [run_engine(warm, first, 0.65, BLOCK)]
    assert warm.pool.n > 0 and warm.effects.active
    users = warm.source.bank.users.copy()
    warm_up(warm, BLOCK, key=48)
    np.testing.assert_array_equal(warm.source.bank.users[: len(users)], users)
    b.append(run_engine(warm, rest, 0.6, BLOCK))
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))


def test_a_warm_up_whose_blocks_never_ran_is_dropped_and_the_engine_put_back():
    """A stream that does not call back: finish() gives up after its timeout, and the events it queued go too."""
    cold, warm = engines(EffectSettings())
    w = WarmUp(warm, BLOCK)
    assert len(warm.queue) > 0 and not w.done
    assert w.finish(timeout=0.01) is False
    assert len(warm.queue) == 0 and w.finish() is True  # once only
    w.step()  # a late callback: nothing
    np.testing.assert_array_equal(run_engine(cold, SONG, 0.5, BLOCK), run_engine(warm, SONG, 0.5, BLOCK))


# A fresh interpreter (nothing of the note path run before, as in a live session), an engine with
# both effect buses that has played silent blocks, then the first notes: the minor page faults of
# each of their blocks (getrusage of the thread, as sing_synth/timing.py records in the callback).
FIRST_NOTES = """
import resource, sys
import numpy as np
from engine_fixtures import HarmonicSource, make_engine, SINE
from sing_synth import events as ev
from sing_synth.effects import EffectSettings
from sing_synth.warmup import WarmUp, warm_up

source = HarmonicSource(48000)
for pitch in (60, 64, 67):
    for vclass in (2, 3):
        source.find(SINE, pitch, vclass)  # the notes exist before play, as in the live cache
engine = make_engine(source, rate=48000, polyphony=64, max_block=256, effects=EffectSettings(), instrument=SINE)
out = np.zeros((256, 2), np.float32)
for _ in range(50):
    engine.process(out)
if sys.argv[1] == "warm":
    warm_up(engine, 256)
    for _ in range(5):
        engine.process(out)

def faults():
    u0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    engine.process(out)
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - u0

engine.push(ev.NOTE_ON, 0, 67, 100)
counts = [faults()]
engine.push(ev.NOTE_ON, 0, 60, 90, engine.frame + 100)
counts += [faults() for _ in range(3)]
engine.push(ev.NOTE_OFF, 0, 67, 0, engine.frame + 50)
counts += [faults() for _ in range(3)]
print(*counts)
"""


def first_note_faults(mode: str) -> list[int]:
    tests = Path(__file__).resolve().parent
    run = subprocess.run(
        [sys.executable, "-c", FIRST_NOTES, mode],
        capture_output=True,
        text=True,
        cwd=tests.parent,
        env={"PYTHONPATH": f"{tests}:{tests.parent}", "PATH": ""},
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return [int(x) for x in run.stdout.split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="getrusage(RUSAGE_THREAD) is Linux's")
def test_after_the_warm_up_the_first_notes_take_no_page_fault():
    cold = first_note_faults("cold")
    assert cold[0] > 0, f"the first note's block took no fault even without a warm-up: the test shows nothing ({cold})"
    warm = first_note_faults("warm")
    # the first note's block takes none; later blocks may take a stray one where the heap grows
    # into a fresh page (CI's machine: one in the second block, [0, 1, 0, ...]), which any block
    # of a long session can meet, warm-up or not
    assert warm[0] == 0 and sum(warm) <= 1 < sum(cold), f"warm {warm} (without the warm-up: {cold})"


# The same in a stream on the JACK test bed, as live play does it (sing_synth/live.py): the warm-up's
# state saved before the stream, its blocks run by the callback (PortAudio's thread: its stack, malloc
# arena and OpenBLAS buffer are its own), then a note; the faults of the note's block as the timing
# records hold them.
STREAM_FIRST_NOTE = """
import sys, time
import numpy as np
from engine_fixtures import HarmonicSource, make_engine, SINE
from sing_synth import events as ev, timing
from sing_synth.audio_out import AudioOutput, find_device
from sing_synth.effects import EffectSettings
from sing_synth.midi_in import AudioClock
from sing_synth.warmup import WarmUp

RATE, PERIOD = 48000, 256
source = HarmonicSource(RATE)
for pitch in (60, 64, 67):
    for vclass in (2, 3):
        source.find(SINE, pitch, vclass)
engine = make_engine(source, rate=RATE, polyphony=64, max_block=PERIOD, effects=EffectSettings(), instrument=SINE)
timeline = timing.Timeline("unused.npz", seconds=10, period=PERIOD / RATE)
audio = AudioOutput(engine, AudioClock(RATE, PERIOD), find_device("system"), RATE, PERIOD, timeline=timeline)
warm = WarmUp(engine, PERIOD) if sys.argv[1] == "warm" else None
try:
    assert audio.start(warm)
    time.sleep(0.2)
    engine.push(ev.NOTE_ON, 0, 67, 100)
    time.sleep(0.2)
finally:
    audio.close()
voices = timeline.block_voices[: timeline.blocks]
print(*timeline.block_faults[int(np.flatnonzero(voices)[0])])
"""


def stream_first_note_faults(mode: str) -> list[int]:
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": f"{tests}:{tests.parent}"}
    run = subprocess.run(
        [sys.executable, "-c", STREAM_FIRST_NOTE, mode],
        capture_output=True,
        text=True,
        cwd=tests.parent,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return [int(x) for x in run.stdout.split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="getrusage(RUSAGE_THREAD) is Linux's")
def test_in_a_stream_the_first_note_after_the_warm_up_takes_no_page_fault(jack_server):
    cold = stream_first_note_faults("cold")
    assert cold[0] > 0, f"the first note's block took no fault even without a warm-up: the test shows nothing ({cold})"
    assert stream_first_note_faults("warm") == [0, 0], f"(without the warm-up: {cold} minor/major)"


def test_the_warm_up_imports_no_torch():
    assert_torch_free("warmup")
