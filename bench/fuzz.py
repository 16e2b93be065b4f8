"""Hostile MIDI files at scale: a seeded fuzz campaign through the reader and the whole render.

Mutates the seed files of ``sing_synth.testing.fuzz`` (valid songs and hand-built nasties, plus
the files of ``--corpus`` if given), reads every file strictly and leniently, renders every
``--render-every``-th one (a tiny seeded preset, or ``--preset``), and prints the outcome counts:
read, salvaged (leniently), refused (a one-line error), rendered, render refused, and the bugs:
crash, hang, leftover. Exit status 1 when there is a bug; ``--keep DIR`` keeps those files.

    python bench/fuzz.py [--files 10000] [--seed 1] [--render-every 25] [--corpus DIR] [--keep DIR]

``--flood N`` instead renders one file of N simultaneous notes over 16 channels and random
programs (``sing_synth.testing.fuzz.flood``) with ``sing-synth render`` in a subprocess, a note cache
of its own, and prints the render's line, its time and its peak memory.

    python bench/fuzz.py --flood 10000 [--preset sing-gm] [--cache-memory GIB]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--render-every", type=int, default=25, help="render one file in N (0: none)")
    parser.add_argument("--preset", help="preset to render with (default: a tiny seeded one)")
    parser.add_argument("--rate", type=int, default=8000)
    parser.add_argument("--limit", type=float, default=60.0, help="seconds a file may take before it is a hang")
    parser.add_argument("--corpus", help="a directory of MIDI files to mutate too")
    parser.add_argument("--keep", help="keep the files that crash or hang here")
    parser.add_argument("--flood", type=int, help="render one file of this many simultaneous notes instead")
    parser.add_argument("--cache-memory", help="--cache-memory of the flood's render (GiB; default: render's)")
    args = parser.parse_args()
    if args.flood:
        return flood(args)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.basicConfig(level=logging.ERROR)  # the readers' warnings (what was salvaged) are counted, not shown

    from sing_synth import preset as presets
    from sing_synth.testing import fuzz

    corpus = [p.read_bytes() for p in sorted(Path(args.corpus).glob("*")) if p.is_file()] if args.corpus else []
    t0 = time.perf_counter()

    def progress(done: int, counts) -> None:
        if done % 1000 == 0:
            print(f"  {done} files, {time.perf_counter() - t0:.0f} s: {dict(counts)}", file=sys.stderr, flush=True)

    counts, problems = fuzz.campaign(
        args.files, seed=args.seed, render_every=args.render_every, rate=args.rate, limit=args.limit, keep=args.keep,
        preset=presets.load(args.preset) if args.preset else None, corpus=corpus, progress=progress,
    )
    seconds = time.perf_counter() - t0
    print(f"fuzz: {args.files} files (seed {args.seed}, {len(fuzz.seeds()) + len(corpus)} seeds), "
          f"{seconds:.0f} s, {platform.python_version()} on {os.cpu_count()} cores")
    for key in ("read", "salvaged", "refused", "rendered", "render refused", "crash", "hang", "leftover"):
        print(f"  {key:15s} {counts[key]}")
    print(f"  peak memory     {fuzz.peak_rss_mib():.0f} MiB (the whole process)")
    for line in problems[:20]:
        print("  " + line)
    return 1 if problems else 0


def flood(args) -> int:
    from sing_synth.testing import fuzz

    work = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    song = work / "flood.mid"
    song.write_bytes(fuzz.flood(args.flood))
    cmd = [sys.executable, "-m", "sing_synth", "render", str(song), "-o", str(work / "flood.wav")]
    cmd += ["--preset", args.preset] if args.preset else []
    cmd += ["--cache-memory", args.cache_memory] if args.cache_memory else []
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, "SING_SYNTH_CACHE": str(work / "cache")}, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"flood: {args.flood} simultaneous notes ({song.stat().st_size} bytes), {' '.join(cmd[3:])}")
    print("  " + (proc.stdout.strip() or proc.stderr.strip().splitlines()[-1]))
    print(f"  exit {proc.returncode}, {seconds:.0f} s, peak memory {peak:.0f} MiB")
    shutil.rmtree(work, ignore_errors=True)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
