"""Morph in live play: from the controller that moves the position to the first note heard at it.

`sing-synth --virtual --instrument A --morph B` on a private JACK dummy server (48 kHz, 256-frame
periods), fed by a JACK MIDI client and recorded by another, as bench/live.py does. Each trial
moves channel 1 to a new position (CC16) and then strikes the channel's last key every 32 ms, on a
period boundary (rtmidi's JACK input stamps events per period), without releasing it: each strike
fades the previous one out in 15 ms, so 16-27 ms after a strike only its own note sounds. Every note
heard is identified sample for sample against the offline renders (NoteRenderer with the
morph's blends) of every position of the line and of the two instruments, at that pitch: the notes
before the new position's are its stand-ins (the nearest position made at that pitch), and the
time from the controller to the first note at the new position bounds how long the renderer
thread took to make it (the controller itself asks for the channel's last note there; at most
32 ms late). No note may be silent: the audio never waits.

The synth starts twice on one disk cache: the first run renders A's notes (the warm-up) and B's
(the morph's other end, behind it) and stops once B is on disk; the second starts warm, so the
renderer thread is idle when the trials begin, as after a while of playing (a morph has its model
built before "ready": its positions need it). The positions of the trials are never on disk: each
is made by the model while the trial plays. A note whose window no reference fits (an xrun of this
busy machine damaged it) is counted as damaged, not named.

    python bench/morph.py [--preset NAME_OR_DIR] [--trials 8] [--steps 16] [--cache DIR] [--save FILE.npz]

``--cache DIR`` keeps the disk cache between runs (the positions' notes are deleted from it before
the trials: they are made while the trials play); ``--save`` writes the recording and the
references, to look at.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sing_synth import preset as presets
from sing_synth.morph import VIRTUAL_BASE, Morph, MorphControl
from sing_synth.testing.jack_server import JackServer, MidiSender, Recorder, Synth, onsets
from sing_synth.testing.presets import TINY_INSTRUMENTS, untrained_preset

RATE, PERIOD = 48000, 256
PITCH, VEL = 60, 100  # velocity 100 is a class of the model: one rendered note per key
SPACING = 6 * PERIOD  # 32 ms between strikes
WINDOW = (round(0.016 * RATE), round(0.027 * RATE))  # after the previous strike's 15 ms fade, before the next
TRIAL = 1.5  # seconds of strikes per trial


def start(preset: Path, cache: Path, env: dict, extra: tuple) -> Synth:
    synth = Synth(preset, cache, env, PERIOD, *extra)
    if not synth.wait_ready(900):
        code, err = synth.stop()
        raise RuntimeError(f"sing-synth did not become ready (exit {code}):\n" + "".join(synth.lines) + err[-3000:])
    return synth


def wait_on_disk(cache: Path, instrument: int, notes: int, timeout: float) -> float:
    """Seconds until the disk cache holds ``notes`` notes of ``instrument`` (any preset, any rate)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if sum(len(list(d.glob("*.note"))) for d in cache.glob(f"*/{instrument}")) >= notes:
            return time.monotonic() - t0
        time.sleep(0.5)
    raise RuntimeError(f"instrument {instrument} not on disk after {timeout:.0f} s")


def references(preset, line: Morph) -> dict[int, np.ndarray]:
    """Instrument id (both ends and every position) -> its note at PITCH, VEL as the synth plays it."""
    from sing_synth.renderer import NoteRenderer

    renderer = NoteRenderer(preset, device="cpu", output_rate=RATE)
    renderer.add_blends(line.blends())
    ids = [line.instrument(q) for q in range(line.steps + 1)]
    return dict(zip(ids, renderer.render([(i, PITCH, 3) for i in ids]), strict=True))


def identify(x: np.ndarray, at: int, refs: dict, shifts: range) -> tuple[int, float, float]:
    """Which reference the note struck at frame ``at`` (plus the synth's latency, searched over
    ``shifts``) is: (id, relative residual, that of the next best); -1 when silent."""
    a, b = WINDOW
    win = np.lib.stride_tricks.sliding_window_view(x[at + shifts.start + a : at + shifts.stop + b], b - a)
    win = win[: len(shifts)].astype(np.float64)
    energy = (win**2).sum(1)
    if energy.max() < 1e-12:
        return -1, 1.0, 1.0
    scores = {}
    for i, ref in refs.items():
        r = ref[a:b].astype(np.float64)
        proj = win @ r
        scores[i] = float(np.min((energy - proj**2 / (r @ r)) / np.maximum(energy, 1e-30)))
    best = sorted(scores, key=scores.get)
    return best[0], scores[best[0]], scores[best[1]]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", help="preset (default: the default preset when installed, else a tiny untrained one)")
    p.add_argument("--trials", type=int, default=8, help="positions visited (default 8)")
    p.add_argument("--steps", type=int, default=16, help="--morph-steps (default 16)")
    p.add_argument("--no-realtime", action="store_true", help="run jackd without -R")
    p.add_argument("--cache", help="the disk cache, kept between runs (default: a temporary one)")
    p.add_argument("--save", help="write the recording, the strikes and the references to this .npz file")
    args = p.parse_args(argv)
    if not JackServer.available():
        print("jackd is not installed: nothing measured")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        try:
            path = presets.resolve(args.preset)
        except Exception:
            if args.preset:
                raise
            path = untrained_preset(tmp / "tiny", TINY_INSTRUMENTS, name="tiny").path
        preset = presets.load(path)
        a = preset.gm_instrument(0) or preset.instruments[0]
        b = preset.gm_instrument(48) or preset.instruments[1]  # strings: far from a piano
        line = Morph((a.id, b.id), args.steps)
        control = MorphControl(line)
        extra = ("--instrument", str(a.id), "--morph", str(b.id), "--morph-steps", str(args.steps),
                 "--no-reverb", "--no-chorus")  # fmt: skip
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (figures on a shared machine are "
              f"upper bounds); preset {preset.name}: {a.name} -> {b.name}, {args.steps} steps, {RATE} Hz, "
              f"{PERIOD}-frame periods")
        refs = references(preset, line)
        cache = Path(args.cache) if args.cache else tmp / "cache"
        n_b = (min(b.pitch_range[1], 127) - max(b.pitch_range[0], 0) + 1) * len(preset.velocities)
        with JackServer(RATE, PERIOD, realtime=not args.no_realtime) as server:
            os.environ["JACK_DEFAULT_SERVER"] = server.name
            synth = start(path, cache, server.env, extra)
            cold = synth.ready_s
            behind = wait_on_disk(cache, b.id, n_b, 1800)
            synth.stop()
            print(f"first start: ready in {cold:.1f} s ({synth.info('instrument:')}); {b.name} on disk "
                  f"{behind:.1f} s later")
            for d in cache.glob("*/*"):  # no position is on disk: each is made as the trials play
                if d.name.isdigit() and int(d.name) >= VIRTUAL_BASE:
                    shutil.rmtree(d)
            synth = start(path, cache, server.env, extra)
            time.sleep(3.0)  # B read from disk behind the warm-up
            sender, rec = MidiSender(), Recorder()
            try:
                sender.connect("sing-synth")
                rec.connect("PortAudio")
                order = [args.steps // 2, args.steps // 4, 3 * args.steps // 4, 1, args.steps - 1,
                         args.steps // 2 - 1, args.steps // 2 + 1, 3]  # fmt: skip
                qs = [q for q in dict.fromkeys(order * 2) if 0 < q < args.steps][: args.trials]
                t0 = (sender.client.frame_time // PERIOD + 60) * PERIOD
                strikes = round(TRIAL * RATE) // SPACING
                length = PERIOD * 40 + len(qs) * (strikes + 16) * SPACING
                events = [(t0, (0x90, PITCH, VEL)), (t0 + SPACING, (0x80, PITCH, 0))]  # a note at A: the last key
                trials = []
                for k, q in enumerate(qs):
                    cc = t0 + PERIOD * 40 + k * (strikes + 16) * SPACING
                    hits = [cc + PERIOD + j * SPACING for j in range(strikes)]
                    events.append((cc, (0xB0, 16, control.index.index(q))))
                    events += [(h, (0x90, PITCH, VEL)) for h in hits] + [(hits[-1] + SPACING, (0x80, PITCH, 0))]
                    trials.append((q, cc, hits))
                rec.record(t0, length)
                sender.schedule(events)
                x = rec.wait(length / RATE + 30)[:, 0].copy()
                synth.stop()
            finally:
                sender.close()
                rec.close()
                synth.stop()
        if args.save:
            np.savez(args.save, x=x, strikes=np.array([h - t0 for _, _, hits in trials for h in hits]),
                     **{f"ref_{q}": refs[line.instrument(q)] for q in range(args.steps + 1)})
        lag = int(onsets(x[: PERIOD * 40], gap=RATE // 20)[0])  # the first note, struck from silence
        shifts = range(max(0, lag - 2 * PERIOD), lag + 4 * PERIOD)  # the synth's latency may drift on xruns
        name = {line.instrument(q): f"{q}/{args.steps}" for q in range(args.steps + 1)}
        print(f"\nsynth latency to the first note {1000 * lag / RATE:.1f} ms; synth xruns {synth.xruns}; "
              f"recorder xruns {rec.xruns}")
        print(f"{'position':>9} {'first at it (ms after the CC)':>30} {'last stand-in (ms)':>19} {'silent':>7}  stand-ins heard")
        made, silent_all = [], 0
        for q, cc, hits in trials:
            target = line.instrument(q)
            heard = [identify(x, h - t0, refs, shifts) for h in hits]
            silent = sum(i < 0 for i, _, _ in heard)
            silent_all += silent
            first = next((j for j, (i, res, other) in enumerate(heard) if i == target and res < 1e-3), None)
            if first is None:
                print(f"{name[target]:>9} {'not heard in ' + str(TRIAL) + ' s':>30}")
                continue
            ms = 1000 * (hits[first] - cc) / RATE
            before = 1000 * (hits[first - 1] - cc) / RATE if first else 0.0
            made.append(ms)
            standins = {}
            for i, res, _ in heard[:first]:
                what = name[i] if i >= 0 and res < 1e-3 else "damaged"
                standins[what] = standins.get(what, 0) + 1
            wrong = sum(i != target or res >= 1e-3 for i, res, _ in heard[first:])
            print(f"{name[target]:>9} {ms:30.1f} {before:19.1f} {silent:7d}  "
                  f"{', '.join(f'{k} x{v}' for k, v in standins.items()) or '-'}"
                  f"{f'  ({wrong} later notes damaged or not it)' if wrong else ''}")
        if made:
            print(f"\nCC to the first note at the new position: median {np.median(made):.0f} ms, max {max(made):.0f} ms "
                  f"over {len(made)} positions (resolution {1000 * SPACING / RATE:.0f} ms); silent notes: {silent_all}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
