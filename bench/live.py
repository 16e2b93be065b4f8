"""Live play figures: callback cost, effects, MIDI-in to audio-out latency, start-to-ready time, a soak run.

1. Callback cost: ``Engine.process`` (the audio callback's work) at 48 kHz with 1, 16, 64 and
   128 keys held on one channel and its pitch bend moving (an event at a random sample of every
   block), at 128 and 256 frames, in a SCHED_FIFO thread where permitted (as the callback):
   paced at one call per block period (median, p99, max as a fraction of the period) and back
   to back (median). The notes are synthetic sustaining tones of the real length (4 s): the
   cost does not depend on their content; held notes reach their loop within the run; the
   velocity lies between two classes, so every voice plays both layers. Each case dry (the
   effect buses off) and with the reverb and chorus buses working (the channel sending to both,
   CC91 and CC93 at 100). Reference: a fixed 512 KiB copy paced the same way (how much this
   machine stretches a job that never varies).
1b. Effects (``--only effects``): at 64 voices, 128 and 256 frames, the same paced and
   back-to-back timings for the mixer alone (the dry engine), the engine with both buses, the
   buses alone (``Effects.process`` on a block of sends), and, when it is installed, Spotify's
   pedalboard (JUCE's Reverb and Chorus, ``process(..., reset=False)`` on a stereo block), with
   the bytes each call allocates at its peak (tracemalloc): the measurements behind
   ``sing_synth/effects.py``'s choice. Reference: the 512 KiB copy, paced.
2. Latency: `sing-synth --virtual` on a private JACK dummy server; a JACK client sends note-ons
   at exact frames (random positions inside the period) and a second one records the output;
   latency = first sound - send, on JACK's frame timeline (median, p95), at 128 and 256 frames.
3. Start to ready: `sing-synth` from launch to its ``ready`` line with an empty disk cache, then
   several times with a warm one (the default preset when it is installed, else a tiny
   untrained one). Reference: a new interpreter importing numpy, mido, rtmidi and sounddevice
   (the libraries live play needs), timed just before each warm start.
4. Soak: after start-up, 100 MIDI events per second (note-ons and offs, pitch bend) for
   ``--soak`` seconds from an rtmidi port (no Python callback of the bench in the JACK graph);
   xruns from jackd's verbose log (which client was late, read every second), and the synth's
   own count. Reference: a do-nothing SCHED_FIFO thread per core reports each wake-up >= 1 ms late
   (over half a period: a machine stall, whose seconds' xruns are told apart), and the steal time
   each second. ``--keep DIR`` keeps it all (bench/timing_report.py DIR reads it).

    python bench/live.py [--blocks 3000] [--notes 30] [--soak 30] [--preset NAME_OR_DIR]
    python bench/live.py --only cost effects
    python bench/live.py --only soak --soak 600      # the 10-minute run of the issue
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from soak import report, soak, start_synth

from sing_synth import events as ev
from sing_synth.effects import Effects, EffectSettings
from sing_synth.engine import Engine
from sing_synth.note_source import DictNoteSource
from sing_synth.preset import Instrument, Preset
from sing_synth.testing.jack_server import JackServer, MidiSender, Recorder, onsets
from sing_synth.testing.presets import TINY_INSTRUMENTS, untrained_preset

RATE = 48000
REALTIME = True  # jackd -R: the server and its clients' audio threads get real-time priority


# 1. Callback cost ---------------------------------------------------------------------------
def callback_cost(voices: int, block: int, blocks: int, paced: bool = True, effects: bool = False) -> np.ndarray:
    """Seconds per ``process`` call with ``voices`` keys held on channel 1 and its bend moving,
    one call per block period (as the audio callback: a real-time thread that sleeps between blocks,
    so caches are cold at each call), or back to back (``paced=False``: caches warm).

    One pitch-bend event per block, at a random sample of the block (a pitch wheel sends one
    every few milliseconds); blocks run long enough for held notes to reach their loop. With
    ``effects``, both effect buses are on and the channel sends to them (CC91 and CC93 at 100).
    """
    engine = held_engine(voices, block, effects)
    out = np.zeros((block, 2), np.float32)
    rng = np.random.default_rng(0)
    gc.collect()
    gc.freeze()  # as the live session does once ready

    def bend(i: int) -> None:
        engine.push(ev.PITCH_BEND, 0, int(8192 + 4000 * np.sin(i / 20)), 0, engine.frame + int(rng.integers(block)))

    times = timed(lambda: engine.process(out), block, blocks, paced, before=bend)
    assert engine.active_voices == voices, (engine.active_voices, voices)
    assert not effects or engine.effects.active
    return times


def held_engine(voices: int, block: int, effects: bool = False) -> Engine:
    """An engine at 48 kHz with ``voices`` keys held on channel 1 (both velocity layers playing)."""
    preset = Preset(
        path=Path("."),
        name="bench",
        config=None,
        instruments=[Instrument(0, "bench organ", family="organ", gm_program=0, pitch_range=(0, 127))],
    )
    t = np.arange(4 * RATE) / RATE
    tone = (0.05 * (np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 440 * t))).astype(np.float32)
    source = DictNoteSource({(0, p, v): tone for p in range(128) for v in range(5)}, rate=RATE)
    settings = EffectSettings() if effects else None
    engine = Engine(preset, source, rate=RATE, polyphony=128, max_block=block, effects=settings)
    if effects:
        engine.push(ev.CONTROL, 0, ev.CC_REVERB, 100, 0)
        engine.push(ev.CONTROL, 0, ev.CC_CHORUS, 100, 0)
    keys = sorted(range(128), key=lambda k: abs(k - 64))[:voices]  # the middle of the keyboard outwards
    for key in keys:
        engine.push(ev.NOTE_ON, 0, key, 90, 0)  # between two velocity classes: both layers play
    engine.process(np.zeros((block, 2), np.float32))
    return engine


def effect_jobs(block: int) -> dict:
    """The jobs part 1b times, by name: each a function of no arguments doing one block's work."""
    jobs = {}
    for name, effects in (("mixer (engine, effects off)", False), ("engine, reverb + chorus", True)):
        engine = held_engine(64, block, effects)
        out = np.zeros((block, 2), np.float32)
        jobs[name] = lambda engine=engine, out=out: engine.process(out)
    rng = np.random.default_rng(0)
    sends = (0.1 * rng.standard_normal((1, 2, block))).astype(np.float32)
    wet = np.zeros((1, 2, block), np.float32)
    ours = Effects(EffectSettings(), RATE, block)
    jobs["reverb + chorus alone (effects.py)"] = lambda: ours.process(sends, wet)
    try:
        import pedalboard
    except ImportError:
        print("   (pedalboard is not installed: pip install pedalboard to time it here)")
        return jobs
    board = pedalboard.Pedalboard([pedalboard.Reverb(), pedalboard.Chorus()])
    stereo = np.ascontiguousarray(np.repeat(sends[0, :1], 2, axis=0))  # a mono send in both channels
    jobs[f"pedalboard {pedalboard.__version__} Reverb + Chorus"] = lambda: board.process(
        stereo, RATE, buffer_size=block, reset=False
    )
    return jobs


def allocated(job, calls: int = 200) -> int:
    """The most bytes (tracemalloc) held at once above the baseline while ``job`` runs ``calls`` times."""
    for _ in range(20):
        job()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(calls):
            job()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def reference_cost(block: int, blocks: int) -> np.ndarray:
    """Seconds per call of a fixed job (copying 512 KiB, about the memory the mixer touches with 64
    voices at 128 frames), paced like ``callback_cost``: how much this machine stretches a job
    that never varies (cold caches, preemption, the hypervisor), to read the callback's tail by."""
    src, dst = np.ones(1 << 16), np.zeros(1 << 16)
    return timed(lambda: np.copyto(dst, src), block, blocks)


def timed(job, block: int, blocks: int, paced: bool = True, before=None, warmup: int = 50) -> np.ndarray:
    """Seconds per ``job()`` call over ``blocks`` calls after ``warmup`` untimed ones; ``paced``: one
    call per block period, like a stream's callback; ``before(i)`` runs untimed before call i."""
    times = np.zeros(blocks)
    period = block / RATE
    deadline = time.perf_counter()
    for i in range(blocks + warmup):
        if before is not None:
            before(i)
        t0 = time.perf_counter()
        job()
        dt = time.perf_counter() - t0
        if i >= warmup:
            times[i - warmup] = dt
        if paced:
            deadline = max(deadline + period, time.perf_counter())
            time.sleep(max(0.0, deadline - time.perf_counter()))
    return times


# Synth subprocess helpers -------------------------------------------------------------------
def tiny_preset(directory: Path) -> Path:
    """A tiny untrained preset with one instrument, the piano (seeded)."""
    return untrained_preset(directory, TINY_INSTRUMENTS[:1], name="tiny").path


@contextlib.contextmanager
def playing(server: JackServer, preset, cache: Path, period: int, *extra: str):
    """The synth on ``server`` with a MIDI sender into it and a recorder of its output."""
    os.environ["JACK_DEFAULT_SERVER"] = server.name
    synth = start_synth(preset, cache, period, server.env, *extra)
    sender, rec = MidiSender(), Recorder()
    try:
        sender.connect("sing-synth")
        rec.connect("PortAudio")
        yield synth, sender, rec
    finally:
        synth.stop()  # first: JACK2 clients leaving the graph make xruns of their own
        sender.close()
        rec.close()


# 2. Latency ---------------------------------------------------------------------------------
def latency(preset: Path, period: int, notes: int, cache: Path) -> dict:
    # dry: a reverb tail would fill the silence between the notes that finds their onsets (the effect
    # buses add no delay to the dry signal; their cost is part 1's)
    dry = ("--no-reverb", "--no-chorus")
    with JackServer(RATE, period, REALTIME) as server, playing(server, preset, cache, period, *dry) as (synth, sender, rec):
        rng = random.Random(period)
        spacing = int(0.45 * RATE)  # a note of 40 ms, its release, then silence
        start = sender.client.frame_time + RATE // 4
        sends = [start + k * spacing + rng.randrange(period) for k in range(notes)]
        key = [48 + rng.randrange(24) for _ in sends]
        events = [(f, (0x90, k, 100)) for f, k in zip(sends, key)]
        events += [(f + RATE // 25, (0x80, k, 0)) for f, k in zip(sends, key)]
        rec.record(start, notes * spacing + RATE // 2)
        sender.schedule(events)
        x = rec.wait(notes * spacing / RATE + 10)[:, 0]
    found = onsets(x, gap=RATE // 20)
    assert len(found) == notes, f"{len(found)} onsets for {notes} notes"
    ms = 1000 * (found - (np.array(sends) - start)) / RATE
    return {
        "median": np.median(ms),
        "p95": np.percentile(ms, 95),
        "min": ms.min(),
        "max": ms.max(),
        "xruns": synth.xruns,
        "gaps": rec.gaps,
    }


# 3. Start to ready ------------------------------------------------------------------------
BARE = "import numpy, mido, rtmidi, sounddevice"  # the reference: the libraries live play needs, nothing of ours


def bare_import(env: dict) -> float:
    """Seconds a new interpreter takes to import the libraries live play needs (the reference)."""
    import subprocess

    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", BARE], env=env, check=True)
    return time.perf_counter() - t


def ready_times(preset, cache: Path, warm_runs: int = 5) -> dict:
    """Launch to ``ready`` with an empty disk cache (every note through the model), then
    ``warm_runs`` times with the notes on disk, each beside a bare import of the libraries live
    play needs measured just before it (the reference: what any Python instrument pays)."""
    with JackServer(RATE, 256, REALTIME) as server:
        synth = start_synth(preset, cache, 256, server.env)
        cold = (synth.ready_s, synth.info("instrument:"))
        synth.stop()
        warm = []
        for _ in range(warm_runs):
            bare = bare_import(server.env)
            synth = start_synth(preset, cache, 256, server.env)
            warm.append((synth.ready_s, bare, synth.info("instrument:")))
            synth.stop()
    return {"cold": cold, "warm": warm}


# 4. Soak: bench/soak.py -----------------------------------------------------------------


PARTS = ("cost", "effects", "latency", "ready", "soak")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=3000, help="blocks timed per callback-cost case (default 3000)")
    p.add_argument("--notes", type=int, default=30, help="notes per latency measurement (default 30)")
    p.add_argument("--soak", type=float, default=30, help="seconds of 100 events/s after start-up (default 30)")
    p.add_argument("--warm-runs", type=int, default=5, help="warm starts timed, each beside a bare import (default 5)")
    p.add_argument("--preset", help="preset for start-to-ready and soak (default: the default preset, else tiny)")
    p.add_argument("--only", nargs="+", choices=PARTS, default=PARTS, help="run only these parts")
    p.add_argument("--busy", action="store_true", help="soak with a float32 matmul loop keeping a core busy")
    p.add_argument("--keep", type=Path, help="soak: keep its records in this folder (bench/timing_report.py DIR)")
    p.add_argument("--no-realtime", action="store_true", help="run jackd without -R (no real-time scheduling)")
    args = p.parse_args(argv)
    global REALTIME
    REALTIME = not args.no_realtime
    print(
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
        f"(figures on a shared machine are upper bounds); jackd {'-R (real-time)' if REALTIME else 'not real-time'}"
    )

    if "cost" in args.only:
        # the audio callback runs in a real-time thread: measure in one too (else other processes'
        # time slices land inside the measured calls)
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
            how = "in a SCHED_FIFO thread"
        except (AttributeError, PermissionError, OSError):
            how = "in a normal thread (real-time scheduling not permitted: figures include preemption)"
        print(f"\n1. Callback cost at 48 kHz, pitch bend moving (fraction of the block period), {how};")
        print("   paced: one call per period as in a stream; back to back: calls in a loop (warm caches);")
        print("   dry: the effect buses off; effects: reverb and chorus on, the channel sending to both")
        print(f"{'voices':>7} {'block':>6} {'period ms':>10} {'':>7} {'median':>8} {'p99':>8} {'max':>8} "
              f"{'back-to-back median':>20}")
        for block in (128, 256):
            period = block / RATE
            for voices in (1, 16, 64, 128):
                for label, effects in (("dry", False), ("effects", True)):
                    t = callback_cost(voices, block, args.blocks, effects=effects) / period
                    hot = callback_cost(voices, block, args.blocks // 2, paced=False, effects=effects) / period
                    print(
                        f"{voices:7d} {block:6d} {1000 * period:10.2f} {label:>7} {np.median(t):8.1%} "
                        f"{np.percentile(t, 99):8.1%} {t.max():8.1%} {np.median(hot):20.1%}",
                        flush=True,
                    )
        ref = reference_cost(128, args.blocks) * 1e6
        print(
            f"reference, a fixed 512 KiB copy paced at 128 frames: median {np.median(ref):.0f} us, "
            f"p99 {np.percentile(ref, 99):.0f} us ({np.percentile(ref, 99) / np.median(ref):.1f}x the median), "
            f"max {ref.max():.0f} us"
        )
        with contextlib.suppress(AttributeError, PermissionError, OSError):
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    if "effects" in args.only:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        except (AttributeError, PermissionError, OSError):
            pass
        print("\n1b. Effects at 48 kHz, 64 voices: microseconds per call (and % of the period), paced and back to")
        print("    back; the most bytes held at once while it runs (tracemalloc): NumPy's small change, or more")
        print(f"{'block':>6} {'job':<40} {'median':>14} {'p99':>14} {'back to back':>14} {'allocated':>10}")
        for block in (128, 256):
            period = block / RATE
            for name, job in effect_jobs(block).items():
                t = timed(job, block, args.blocks)
                hot = timed(job, block, args.blocks // 2, paced=False)
                med, p99, b2b = np.median(t), np.percentile(t, 99), np.median(hot)
                print(
                    f"{block:6d} {name:<40} {1e6 * med:6.0f} ({med / period:5.1%}) {1e6 * p99:6.0f} ({p99 / period:5.1%}) "
                    f"{1e6 * b2b:6.0f} ({b2b / period:5.1%}) {allocated(job):8d} B",
                    flush=True,
                )
        ref = reference_cost(128, args.blocks) * 1e6
        print(f"reference, a fixed 512 KiB copy paced at 128 frames: median {np.median(ref):.0f} us, "
              f"p99 {np.percentile(ref, 99):.0f} us")
        with contextlib.suppress(AttributeError, PermissionError, OSError):
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    if set(args.only) - {"cost", "effects"} and not JackServer.available():
        print("\njackd is not installed: latency, start-up and soak figures skipped")
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tiny = tiny_preset(tmp / "tiny")
        if "latency" in args.only:
            print("\n2. MIDI-in to audio-out latency on a JACK dummy server (send frame to first sound)")
            print(f"{'block':>6} {'period ms':>10} {'median ms':>10} {'p95 ms':>8} {'min':>7} {'max':>7} {'xruns':>6}")
            for period in (128, 256):
                r = latency(tiny, period, args.notes, tmp / "cache-tiny")
                print(
                    f"{period:6d} {1000 * period / RATE:10.2f} {r['median']:10.2f} {r['p95']:8.2f} "
                    f"{r['min']:7.2f} {r['max']:7.2f} {r['xruns']:6d}",
                    flush=True,
                )

        from sing_synth import preset as presets

        try:
            preset = presets.resolve(args.preset)
        except Exception:
            if args.preset:
                raise
            preset = tiny
        cache = tmp / "cache"
        if "ready" in args.only:
            print(f"\n3. Start to ready ({presets.load(preset).name}, instrument 0, 48 kHz; launch to `ready`); "
                  f"reference: `python -c \"{BARE}\"` just before each warm start")
            r = ready_times(preset, cache, args.warm_runs)
            print(f"  empty disk cache: {r['cold'][0]:5.2f} s   ({r['cold'][1]})", flush=True)
            for seconds, bare, info in r["warm"]:
                print(f"  warm disk cache:  {seconds:5.2f} s, bare import {bare:5.2f} s: {seconds / bare:4.2f}x   ({info})")
            ratios = sorted(s / b for s, b, _ in r["warm"])
            times = sorted(s for s, _, _ in r["warm"])
            print(f"  warm: median {times[len(times) // 2]:.2f} s, {ratios[len(ratios) // 2]:.2f}x the bare import "
                  f"(targets: <= 1 s and <= 2x); cold {r['cold'][0]:.1f} s (target <= 10 s)", flush=True)
        if "soak" in args.only:
            print(f"\n4. Soak: {args.soak:.0f} s of 100 MIDI events/s after start-up (block 256)")
            if args.busy:
                print("  with a load generator (a float32 matmul loop, one thread) keeping a core busy")
            r = soak(preset, cache, args.soak, busy=args.busy, realtime=REALTIME, keep=args.keep)
            print("\n".join(report(r, args.keep)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
