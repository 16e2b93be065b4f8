"""Part 4 of bench/live.py: the soak. The synth plays 100 MIDI events per second for a given time
after start-up; jackd's log says which client was late at each xrun, a do-nothing SCHED_FIFO
thread on each core tells the machine's stalls from ours, and the synth's timing records
(``SING_SYNTH_TIMING``) say where its time went (bench/timing_report.py)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import timing_report

from sing_synth import timing
from sing_synth.testing.jack_server import JackServer, Synth

RATE = 48000


def start_synth(preset, cache: Path, period: int, env: dict, *extra: str) -> Synth:
    synth = Synth(preset, cache, env, period, *extra)
    if not synth.wait_ready(600):
        code, err = synth.stop()
        raise RuntimeError(f"sing-synth did not become ready (exit {code}):\n" + "".join(synth.lines) + err[-3000:])
    return synth


# The reference of the soak: one process per core whose SCHED_FIFO thread does nothing but sleep
# 1 ms at a time and prints when (CLOCK_MONOTONIC) and by how much it woke late (1 ms or more:
# every one is kept; those of more than half a block period count as stalls). Such a stall is the
# machine's (on a virtual machine, its vCPU not running): an audio thread on that core, or the
# server's, loses that time whatever its design.
PROBE = """
import os, sys, time
try:
    os.sched_setaffinity(0, {int(sys.argv[3])})
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
except (AttributeError, PermissionError, OSError):
    pass
limit, end = float(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while True:
    a = time.monotonic()
    time.sleep(0.001)
    b = time.monotonic()
    if b - a - 0.001 > limit:
        print(f"{b:.4f} {b - a - 0.001:.4f}", flush=True)
    if b > end:
        break
"""


BUSY = """
import numpy as np
a = np.ones((256, 256), np.float32)
while True:
    a = (a @ a) * (1.0 / 256)
"""


PROBE_LIMIT = 0.001  # s: the reference's wake-ups this late or later are kept


def steal() -> float:
    """Seconds of steal time of all the machine's CPUs so far (/proc/stat; 0 where there is none)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def soak(preset, cache: Path, seconds: float, period: int = 256, busy: bool = False, realtime: bool = True,
         keep: Path | None = None) -> dict:
    """The synth alone in the JACK graph, fed by an rtmidi output port from this process: rtmidi
    sends from its own C++ JACK callback, so no Python callback of the bench sits in the graph
    and every xrun counted is the synth's or the server's. Beside it runs the PROBE reference;
    the xruns are read from jackd's log every second, to tell those of seconds the machine
    stalled from the others, and the machine's steal time from /proc/stat. ``keep``: a folder
    where the records stay (the synth's timing, jackd's log, ``soak.npz``: xrun seconds, the
    reference's late wake-ups, steal time per second), for ``bench/timing_report.py``."""
    import rtmidi

    log = cache.parent / "jackd-soak.log"
    record = cache.parent / "timing.npz"
    load = [subprocess.Popen([sys.executable, "-c", BUSY], env={**os.environ, "OMP_NUM_THREADS": "1"})] if busy else []
    with JackServer(RATE, period, realtime, log=str(log)) as server:
        os.environ["JACK_DEFAULT_SERVER"] = server.name
        synth = start_synth(preset, cache, period, {**server.env, timing.ENV: str(record)})
        out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="sing-soak")
        try:
            ports = [i for i, name in enumerate(out.get_ports()) if "sing-synth" in name]
            out.open_port(ports[0], "keys")
            time.sleep(2.0)  # start-up done: the ports are connected
            before = server.late_clients()
            probes = [
                subprocess.Popen(
                    [sys.executable, "-c", PROBE, str(PROBE_LIMIT), str(seconds + 1), str(cpu)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for cpu in sorted(os.sched_getaffinity(0))
            ]
            rng = random.Random(0)
            held: list[int] = []
            t0 = time.monotonic()
            n = int(seconds * 100)
            xrun_seconds, counted = [], [sum(before.values())]  # (time of the poll, xruns since the last)
            stolen = [(time.monotonic(), steal())]  # (time of the poll, steal seconds so far)

            def poll() -> dict:
                stolen.append((time.monotonic(), steal()))
                late = server.late_clients()
                if sum(late.values()) > counted[0]:
                    xrun_seconds.append((time.monotonic(), sum(late.values()) - counted[0]))
                    counted[0] = sum(late.values())
                return late

            for k in range(n):
                if k % 100 == 99:
                    poll()
                time.sleep(max(0.0, t0 + (k + rng.random()) / 100 - time.monotonic()))
                if k % 10 == 9:
                    out.send_message([0xE0, 0, 32 + rng.randrange(64)])  # bend
                elif held and (len(held) > 12 or rng.random() < 0.5):
                    out.send_message([0x80, held.pop(rng.randrange(len(held))), 0])
                else:
                    key = 36 + rng.randrange(48)
                    held.append(key)
                    out.send_message([0x90, key, 30 + rng.randrange(97)])
            out.send_message([0xB0, 123, 0])
            time.sleep(1.0)
            during = poll()
            span = time.monotonic() - t0
            wakeups = [
                tuple(map(float, line.split()))
                for p in probes
                for line in p.communicate(timeout=30)[0].split("\n")
                if line
            ]
            stalls = [(t, lag) for t, lag in wakeups if lag > period / RATE / 2]
        finally:
            synth.stop()
            out.close_port()
            del out
            for p in load:
                p.kill()
                p.wait()
    xruns = {name: count - before.get(name, 0) for name, count in during.items() if count > before.get(name, 0)}
    # an xrun is counted at the first poll after it (polls 1 s apart): it belongs to a machine stall
    # when the probe stalled in the 1.5 s before that poll
    machine = sum(c for t, c in xrun_seconds if any(t - 1.5 <= s <= t for s, _ in stalls))
    ours = [(t - 1.5, t) for t, c in xrun_seconds if not any(t - 1.5 <= s <= t for s, _ in stalls)]
    context = {
        "xrun_seconds": np.array(xrun_seconds).reshape(-1, 2),
        "wakeups": np.array(wakeups).reshape(-1, 2),
        "steal": np.array(stolen).reshape(-1, 2),
        "period": period / RATE,
    }
    rec = timing_report.load(record) if record.exists() else None
    breakdown = timing_report.summary(rec, period / RATE, ours, context) if rec is not None else []
    breakdown += timing_report.coincidence(context, ours)
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        np.savez(keep / "soak.npz", **context)
        for path in (record, log):
            if path.exists():
                shutil.copy(path, keep / path.name)
    return {
        "breakdown": breakdown,
        "events": n + 1,
        "seconds": span,
        "xruns": sum(xruns.values()),
        "late": xruns,
        "synth_xruns": synth.xruns,
        "load": synth.info("stopped:"),
        "stalls": stalls,
        "wakeups": wakeups,
        "steal": stolen[-1][1] - stolen[0][1],
        "machine_xruns": machine,
        "period": period / RATE,
    }


def report(r: dict, keep: Path | None = None) -> list[str]:
    """The lines bench/live.py prints for a soak's result ``r``."""
    lags = [lag for _, lag in r["stalls"]]
    period = r["period"]
    return [
        f"  {r['events']} events in {r['seconds']:.0f} s; xruns after start-up (jackd -v): {r['xruns']} {r['late'] or ''}",
        f"  synth's own count, start-up included: {r['synth_xruns']} xruns; {r['load']}",
        f"  reference: a do-nothing SCHED_FIFO thread on each core woke more than half a period late {len(lags)} "
        f"times ({sum(lag > period for lag in lags)} by more than a period, worst {1000 * max(lags, default=0.0):.1f} "
        f"ms); xruns in the seconds of those machine stalls: {r['machine_xruns']}, in other seconds: "
        f"{r['xruns'] - r['machine_xruns']}; wake-ups >= 1 ms late: {len(r['wakeups'])}; steal time {r['steal']:.2f} s"
        + (f"; records in {keep}" if keep else ""),
        *r["breakdown"],
    ]
