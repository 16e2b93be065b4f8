"""Live-play figures: callback cost, MIDI-in to audio-out latency on JACK, time to ready.

1. Callback cost: ``Engine.process`` (all the audio callback does) timed over many blocks with
   1, 16, 64 and 128 voices sounding and pitch bend moving on every channel each block, at 128
   and 256 frames and 48 kHz, as a fraction of the block period. The notes are 4 s of noise at
   the output rate: the mixing cost does not depend on what the notes contain.
2. Latency: `sing-synth --virtual` in a subprocess on a private JACK dummy server; a JACK client
   sends note-ons at exact frames and records the synth's output; latency = first non-silent
   recorded sample - send frame (median, p95), at 128 and 256 frames.
3. Start to ready: the same command with an empty, then a warm, disk cache.

    python bench/live.py [--preset sing-gm] [--notes 40] [--blocks 3000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from jack_server import JackServer  # noqa: E402

from sing_synth import events as ev  # noqa: E402
from sing_synth import preset as presets  # noqa: E402
from sing_synth.engine import DictNoteSource, Engine  # noqa: E402

RATE = 48000


def callback_cost(preset, voices: int, block: int, blocks: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(0)
    inst = preset.instruments[0].id
    source = DictNoteSource()
    for p in range(128):
        for v in range(5):
            source.add((inst, p, v), (0.01 * rng.standard_normal(4 * RATE)).astype(np.float32))
    engine = Engine(preset, source, rate=RATE, instrument=inst, polyphony=max(voices, 1), max_block=block)
    out = np.zeros((block, 2), np.float32)
    for k in range(voices):
        engine.push(ev.NOTE_ON, k % 9, 30 + (k * 7) % 80, 100)  # melodic channels, distinct keys
    engine.process(out)
    times = []
    for n in range(blocks):
        bend = 8192 + int(4000 * np.sin(n / 20))
        for ch in range(9):
            engine.push(ev.PITCH_BEND, ch, bend, 0)
        t = time.perf_counter()
        engine.process(out)
        times.append(time.perf_counter() - t)
    assert engine.active_voices >= min(voices, 1)
    period = block / RATE
    t = np.array(times) / period
    return float(np.median(t)), float(np.percentile(t, 99)), float(t.max())


def start_synth(preset_arg: str, period: int, cache_dir: str, env: dict):
    cmd = [sys.executable, "-m", "sing_synth", "--virtual", "--midi-api", "jack", "--preset", preset_arg,
           "--instrument", "0", "--blocksize", str(period), "--cache-dir", cache_dir]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = threading.Event()
    lines: list[str] = []

    def reader():
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == "ready":
                ready.set()

    threading.Thread(target=reader, daemon=True).start()
    if not ready.wait(180):
        proc.kill()
        raise RuntimeError("sing-synth did not become ready: " + proc.stderr.read()[-2000:])
    return proc, time.perf_counter() - t0, lines


def stop_synth(proc) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def measure_latency(period: int, preset_arg: str, notes: int) -> tuple[list[float], int]:
    import jack

    server = JackServer(RATE, period).start()
    try:
        with tempfile.TemporaryDirectory() as cache:
            proc, _, _ = start_synth(preset_arg, period, cache, server.env)
            try:
                os.environ["JACK_DEFAULT_SERVER"] = server.name
                # two clients, so that the graph has no loop: sender -> synth -> recorder
                sender = jack.Client("bench-send", no_start_server=True)
                recorder = jack.Client("bench-record", no_start_server=True)
                midi = sender.midi_outports.register("out")
                inport = recorder.inports.register("in")
                spacing = int(0.4 * RATE)
                audio = np.zeros(spacing * (notes + 2), np.float32)
                state = {"start": None, "pos": 0, "pending": []}
                xruns = [0]

                def send(frames):
                    midi.clear_buffer()
                    now = sender.last_frame_time
                    pend = state["pending"]
                    while pend and pend[0][0] < now + frames:
                        at, data = pend.pop(0)
                        midi.write_midi_event(max(at - now, 0), bytes(data))

                def record(frames):
                    now = recorder.last_frame_time
                    pos = state["pos"]
                    if state["start"] is not None and now >= state["start"] and pos + frames <= len(audio):
                        audio[pos : pos + frames] = inport.get_array()
                        state["pos"] = pos + frames

                sender.set_process_callback(send)
                recorder.set_process_callback(record)
                recorder.set_xrun_callback(lambda delay: xruns.__setitem__(0, xruns[0] + 1))
                sender.activate()
                recorder.activate()
                target = [p.name for p in sender.get_ports(is_midi=True, is_input=True) if "sing-synth" in p.name][0]
                source = [p.name for p in sender.get_ports(is_audio=True, is_output=True) if "PortAudio" in p.name][0]
                sender.connect(midi, target)
                recorder.connect(source, inport)
                time.sleep(0.3)
                start = sender.frame_time + RATE // 4
                start -= start % period  # recording starts on a period boundary
                sends = []
                pend = []
                for k in range(notes):
                    at = start + spacing * (k + 1) + (k * 37) % period  # every offset inside a period
                    sends.append(at - start)
                    pend += [(at, (0x90, 60 + k % 12, 100)), (at + int(0.1 * RATE), (0x80, 60 + k % 12, 0))]
                state["start"] = start
                state["pending"] = pend
                time.sleep(spacing * (notes + 1.5) / RATE)
                for c in (sender, recorder):
                    c.deactivate()
                    c.close()
            finally:
                stop_synth(proc)
    finally:
        server.stop()
    lat = []
    for at in sends:
        seg = np.abs(audio[at - period * 3 : at + int(0.1 * RATE)])
        idx = np.nonzero(seg > 1e-4)[0]
        if len(idx):
            lat.append(1000 * (idx[0] - period * 3) / RATE)
    return lat, xruns[0]


def soak(period: int, preset_arg: str, minutes: float, rate_per_s: int = 100) -> tuple[int, int, int]:
    """Play ``rate_per_s`` MIDI events a second for ``minutes``; returns (events, synth xruns, JACK xruns)."""
    import jack

    server = JackServer(RATE, period).start()
    try:
        with tempfile.TemporaryDirectory() as cache:
            proc, _, lines = start_synth(preset_arg, period, cache, server.env)
            os.environ["JACK_DEFAULT_SERVER"] = server.name
            client = jack.Client("bench-soak", no_start_server=True)
            midi = client.midi_outports.register("out")
            rng = np.random.default_rng(0)
            every = RATE // rate_per_s
            state = {"next": None, "sent": 0, "held": []}
            xruns = [0]

            def send(frames):
                midi.clear_buffer()
                now = client.last_frame_time
                if state["next"] is None:
                    state["next"] = now
                while state["next"] < now + frames:
                    off = state["next"] - now
                    held = state["held"]
                    if len(held) > 24 or (held and rng.random() < 0.45):
                        midi.write_midi_event(off, bytes((0x80, held.pop(0), 0)))
                    elif rng.random() < 0.2:
                        midi.write_midi_event(off, bytes((0xE0, 0, int(rng.integers(0, 128)))))
                    else:
                        key = int(rng.integers(36, 96))
                        held.append(key)
                        midi.write_midi_event(off, bytes((0x90, key, int(rng.integers(30, 128)))))
                    state["sent"] += 1
                    state["next"] += every

            client.set_process_callback(send)
            client.set_xrun_callback(lambda delay: xruns.__setitem__(0, xruns[0] + 1))
            client.activate()
            target = [p.name for p in client.get_ports(is_midi=True, is_input=True) if "sing-synth" in p.name][0]
            client.connect(midi, target)
            time.sleep(minutes * 60)
            client.deactivate()
            client.close()
            stop_synth(proc)
            time.sleep(0.5)  # the reader thread collects the last lines
            out = "".join(lines)
    finally:
        server.stop()
    synth_xruns = int(out.split(" xruns")[0].rsplit(" ", 1)[-1]) if " xruns" in out else -1
    return state["sent"], synth_xruns, xruns[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=None, help="preset name or directory (default: sing-gm)")
    parser.add_argument("--notes", type=int, default=40, help="notes per latency run")
    parser.add_argument("--blocks", type=int, default=3000, help="blocks per callback-cost case")
    parser.add_argument("--soak-minutes", type=float, default=1.0, help="length of the 100 events/s run (issue: 10)")
    args = parser.parse_args()
    preset = presets.load(args.preset)
    preset_arg = str(preset.path)

    print(f"# preset {preset.name}; callback cost = Engine.process time / block period (48 kHz)")
    print(f"{'voices':>6} {'block':>5} {'median':>8} {'p99':>8} {'max':>8}")
    for block in (128, 256):
        for voices in (1, 16, 64, 128):
            med, p99, mx = callback_cost(preset, voices, block, args.blocks)
            print(f"{voices:6d} {block:5d} {med:8.1%} {p99:8.1%} {mx:8.1%}", flush=True)

    print("\n# MIDI in -> audio out on a JACK dummy server (first non-silent sample after the send)")
    print(f"{'block':>5} {'period ms':>9} {'median ms':>9} {'p95 ms':>8} {'target ms':>9} {'notes':>5} {'xruns':>5}")
    for period in (128, 256):
        lat, xruns = measure_latency(period, preset_arg, args.notes)
        p_ms = 1000 * period / RATE
        print(f"{period:5d} {p_ms:9.2f} {np.median(lat):9.2f} {np.percentile(lat, 95):8.2f} "
              f"{1.5 * p_ms + 1:9.2f} {len(lat):5d} {xruns:5d}", flush=True)

    print(f"\n# soak: 100 MIDI events/s (notes, bends) for {args.soak_minutes:g} min at 256 frames, after start-up")
    sent, synth_xruns, jack_xruns = soak(256, preset_arg, args.soak_minutes)
    print(f"events sent {sent}, synth xruns (PortAudio status) {synth_xruns}, JACK xruns {jack_xruns}", flush=True)

    print("\n# start to ready (process start to the `ready` line), 256 frames")
    server = JackServer(RATE, 256).start()
    try:
        with tempfile.TemporaryDirectory() as cache:
            for label in ("empty disk cache", "warm disk cache"):
                proc, seconds, _ = start_synth(preset_arg, 256, cache, server.env)
                stop_synth(proc)
                print(f"{label:<18} {seconds:6.2f} s", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
