"""Live play end to end on a JACK dummy server: real MIDI in, real audio out, recorded by a client.

`sing-synth --virtual` runs as a subprocess with a tiny seeded preset; this test sends MIDI at
exact frames through a JACK-Client MIDI port and records the synth's PortAudio output with
JACK-Client input ports, then checks onsets, releases, a chord, the sustain pedal and xruns.
Untrained tiny models have no clear fundamental, so "the right pitch" is checked by matching
each recorded note against the same note rendered offline by the same preset.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from engine_fixtures import tiny_preset  # noqa: F401
from jack_server import jack_server  # noqa: F401

jack = pytest.importorskip("jack")

RATE, PERIOD = 48000, 256
VEL = 100
# (seconds, bytes): a note, a chord, a pedalled note
SCRIPT = [
    (0.50, (0x90, 60, VEL)), (1.00, (0x80, 60, 0)),
    (1.50, (0x90, 60, VEL)), (1.50, (0x90, 64, VEL)), (1.50, (0x90, 67, VEL)),
    (2.00, (0x80, 60, 0)), (2.00, (0x80, 64, 0)), (2.00, (0x80, 67, 0)),
    (2.50, (0xB0, 64, 127)), (2.55, (0x90, 62, VEL)), (2.70, (0x80, 62, 0)), (3.50, (0xB0, 64, 0)),
]
LENGTH = 4.3


class Recorder:
    """A JACK client sending the script's MIDI at exact frames and recording two audio inputs."""

    def __init__(self):
        self.client = jack.Client("sing-test", no_start_server=True)
        self.midi = self.client.midi_outports.register("out")
        self.ins = [self.client.inports.register(f"in_{c}") for c in "LR"]
        self.audio = np.zeros((int(LENGTH * RATE) + RATE, 2), np.float32)
        self.pos = 0
        self.start_frame = None
        self.pending = []
        self.xruns = 0
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)

    def _xrun(self, delay):
        self.xruns += 1

    def _process(self, frames):
        self.midi.clear_buffer()
        now = self.client.last_frame_time
        if self.start_frame is None:
            return
        while self.pending and self.pending[0][0] < now + frames:
            at, data = self.pending.pop(0)
            self.midi.write_midi_event(max(at - now, 0), bytes(data))
        rel = now - self.start_frame
        if 0 <= rel and self.pos + frames <= len(self.audio):
            self.audio[self.pos : self.pos + frames, 0] = self.ins[0].get_array()
            self.audio[self.pos : self.pos + frames, 1] = self.ins[1].get_array()
            self.pos += frames

    def play(self):
        start = self.client.frame_time + RATE // 4
        self.pending = [(start + int(round(t * RATE)), d) for t, d in SCRIPT]
        self.start_frame = start
        time.sleep(LENGTH + 0.3)


def wait_for(proc, text, timeout):
    lines, found = [], threading.Event()

    def reader():
        for line in proc.stdout:
            lines.append(line)
            if text in line:
                found.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    found.wait(timeout)
    return found.is_set(), lines, thread


def best_corr(x: np.ndarray, start: int, ref: np.ndarray, n: int, search: int = 64) -> float:
    """Highest correlation of ``ref[:n]`` with ``x`` starting within ``search`` frames of ``start``."""
    return max(float(np.corrcoef(x[start + k : start + k + n], ref[:n])[0, 1]) for k in range(-search, search + 1))


def onset(x: np.ndarray, start: int, floor: float = 1e-4) -> int:
    idx = np.nonzero(np.abs(x[start:]) > floor)[0]
    return start + int(idx[0]) if len(idx) else -1


def test_live_notes_chord_and_pedal_on_jack(jack_server, tiny_preset, tmp_path):  # noqa: F811
    cmd = [sys.executable, "-m", "sing_synth", "--virtual", "--midi-api", "jack", "--preset", str(tiny_preset.path),
           "--instrument", "0", "--blocksize", str(PERIOD), "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.Popen(cmd, env=jack_server.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ok, lines, reader = wait_for(proc, "ready", 90)
        assert ok, "".join(lines) + proc.stderr.read() if proc.poll() is not None else "no ready line"
        rec = Recorder()
        rec.client.activate()
        synth_in = [p.name for p in rec.client.get_ports(is_midi=True, is_input=True) if "sing-synth" in p.name]
        synth_out = [p.name for p in rec.client.get_ports(is_audio=True, is_output=True) if "PortAudio" in p.name]
        assert synth_in and len(synth_out) == 2, (synth_in, synth_out)
        rec.client.connect(rec.midi, synth_in[0])
        for src, dst in zip(synth_out, rec.ins):
            rec.client.connect(src, dst)
        time.sleep(0.3)
        rec.play()
        rec.client.deactivate()
        rec.client.close()
    finally:
        proc.terminate()
        err = proc.stderr.read()
        proc.wait(30)
        reader.join(5)
    out = "".join(lines)
    assert proc.returncode == 0, err
    assert "stopped:" in out
    synth_xruns = int(out.split(" xruns")[0].rsplit(" ", 1)[-1])

    x = rec.audio[:, 0]
    period_ms = 1000 * PERIOD / RATE

    def at(t):
        return int(round(t * RATE))

    # silence before the first note, onset after it with a constant latency
    assert np.abs(x[: at(0.45)]).max() == 0.0
    first = onset(x, at(0.45))
    latency_ms = 1000 * (first - at(0.5)) / RATE
    # The recorder sits in a loop with the synth (MIDI out, audio in), so JACK's graph order shifts
    # its timeline by up to a period: the absolute figure is bounded, the spread is what matters.
    assert abs(latency_ms) <= 3 * period_ms + 2, latency_ms
    # released: silent shortly after the note-off (release envelope 0.25 s)
    assert np.abs(x[at(1.0) + first - at(0.5) + at(0.3) : at(1.45)]).max() < 1e-4
    # the chord starts with the same latency; its three notes are present
    chord = onset(x, at(1.5) - 3 * PERIOD)
    pedal = onset(x, at(2.55) - 3 * PERIOD)
    onsets_ms = [latency_ms, 1000 * (chord - at(1.5)) / RATE, 1000 * (pedal - at(2.55)) / RATE]
    assert max(onsets_ms) - min(onsets_ms) <= period_ms + 1, onsets_ms
    # sustain pedal: the note released at 2.70 s sounds until the pedal goes up at 3.50 s
    lag = first - at(0.5)
    assert np.sqrt(np.mean(x[at(2.9) + lag : at(3.4) + lag] ** 2)) > 1e-3
    assert np.abs(x[at(3.5) + lag + at(0.3) : at(4.2)]).max() < 1e-4

    # the right notes: compare with the same notes rendered offline by the same preset
    from sing_synth.renderer import NoteRenderer

    r = NoteRenderer(tiny_preset, device="cpu", output_rate=RATE)
    ref = {p: r.render_velocity(0, p, VEL) for p in (60, 64, 67)}
    assert best_corr(x, first, ref[60], at(0.4)) > 0.95
    # the chord is the sum of its three notes (an untrained model's pitches differ too little to
    # tell them apart one by one: tests/test_default_preset.py checks pitches with the trained one)
    assert best_corr(x, chord, sum(ref[p] for p in (60, 64, 67)), at(0.4)) > 0.75  # 3 notes, each its own frame
    seg, single = x[chord : chord + at(0.4)], x[first : first + at(0.4)]
    assert np.sqrt(np.mean(seg**2)) > 1.5 * np.sqrt(np.mean(single**2))
    print(f"onsets {onsets_ms} ms, synth xruns {synth_xruns}, recorder xruns {rec.xruns}")
    # xruns are counted, not assumed away: on two cores shared with other work JACK's dummy
    # driver reports some; the checks above hold through them
    assert synth_xruns <= 10, synth_xruns
