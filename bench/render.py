"""Rendering speed: `sing-synth render` of a multi-track General MIDI song, cold and warm, against FluidSynth.

Generates a deterministic song of a few minutes (sing_synth.testing.songs: piano with pedal,
bass, strings with expression swells, lead with bends, drums, tempo changes), then, each in a
new process as a user would run it:
  - cold: an empty note cache on disk, so every note the song needs goes through the model
    (torch imported, the model loaded, notes generated, resampled and written to the cache);
  - warm: the same command again: every note is read from the cache, no model, no torch; then
    warm again with the reverb and chorus buses off (``--no-reverb --no-chorus``; they are on by
    default), with ``--normalize -16`` and with ``--stems``;
  - FluidSynth (`fluidsynth -ni -F out.wav FluidR3_GM.sf2 song.mid`), before and after ours: the
    reference is the mean of the two runs.
Each render reports its split: imports (interpreter start and imports), notes from the cache,
model (torch import and loading, then generation with resampling and cache writes), mixing
(the engine), writing (the output file), the rest (reading the MIDI file and the preset).

The cold render's process then times the model alone at batch 64 on the same device and
threads, as bench/generation.py does (the fastest of three calls after a warm-up): the
reference of the generation speed. It prints the targets of
issue 13: cold <= 0.5x FluidSynth's time, warm <= 0.2x, mixing >= 8x faster than FluidSynth,
generation >= 80% of the model's batch-64 speed.

Without --preset it builds an untrained preset of the chosen size (weights do not change the
speed) with a General MIDI table of 128 programs and a drum kit.

    python bench/render.py [--minutes 3] [--size small] [--preset NAME] [--threads N] [--model-device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"

# `sing-synth render ...` in a new interpreter: the times of its parts, whether it imported torch, its peak RSS
CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from sing_synth import cli, render
imported = time.perf_counter() - t0
results = []
make = render.render_file
render.render_file = lambda *a, **k: results.append(make(*a, **k)) or results[-1]
assert cli.main(sys.argv[1:]) == 0
r = results[-1]
done = time.time()  # the render's end (what follows is not part of it)
speed = None
if r.notes_rendered:  # the reference: the model alone, in this process, at batch 64
    from sing_synth import preset as presets
    from sing_synth.renderer import NoteRenderer
    opt = lambda name: sys.argv[sys.argv.index(name) + 1]
    model = NoteRenderer(presets.load(opt("--preset")), device=opt("--model-device"), batch_size=64,
                         threads=int(opt("--threads")), precision=opt("--precision"))
    ids = sorted(model.ids)
    keys = [(ids[k * 7 % len(ids)], 30 + k % 60, k % 5) for k in range(64)]
    model.render_model_rate(keys)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        model.render_model_rate(keys)
        best = min(best, time.perf_counter() - t)
    speed = 64 / best
print(json.dumps({"done": done, "model_notes_per_s": speed, "import_s": imported, "total_s": r.total_seconds, "disk_s": r.disk_seconds,
                  "setup_s": r.setup_seconds, "model_s": r.model_seconds, "mix_s": r.mix_seconds - r.write_seconds,
                  "write_s": r.write_seconds, "rendered": r.notes_rendered, "loaded": r.notes_loaded,
                  "needed": r.notes_needed, "audio_s": r.duration, "torch": "torch" in sys.modules,
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_render(song: Path, out: Path, preset: str, args, env: dict, *extra: str) -> dict:
    cmd = [sys.executable, "-c", CHILD, "render", str(song), "-o", str(out), "--preset", preset, "--model-device",
           args.model_device, "--threads", str(args.threads), "--batch-size", str(args.batch_size), "--rate",
           str(args.rate), "--precision", args.precision, *extra]
    t = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"render failed:\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["wall_s"] = r["done"] - t  # launch to the render's end (the interpreter's exit is not counted)
    r["imports_s"] = r["wall_s"] - r["total_s"]  # interpreter start, imports and the command line
    r["other_s"] = r["total_s"] - r["disk_s"] - r["setup_s"] - r["model_s"] - r["mix_s"] - r["write_s"]
    return r


def fluidsynth(song: Path, out: Path, rate: int) -> float | None:
    if not (shutil.which("fluidsynth") and Path(FONT).is_file()):
        return None
    t = time.perf_counter()
    subprocess.run(["fluidsynth", "-ni", "-q", "-r", str(rate), "-F", str(out), FONT, str(song)], check=True,
                   capture_output=True)
    return time.perf_counter() - t


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--preset", help="a preset name or directory (default: an untrained one of --size)")
    parser.add_argument("--size", default="small", choices=("tiny", "small", "paper"))
    parser.add_argument("--model-device", default="auto", help="where the model runs: auto, cpu, cuda")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the free cores, as a render chooses)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16", "float16"),
                        help="the model's precision, in the renders and the reference alike")
    parser.add_argument("--rate", type=int, default=44100)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    from sing_synth import preset as presets
    from sing_synth.renderer import free_cores, pick_device
    from sing_synth.testing import songs
    from sing_synth.testing.presets import general_midi_instruments, untrained_preset

    args.threads = args.threads or free_cores()
    device = str(pick_device(args.model_device))
    work = Path(tempfile.mkdtemp(prefix="bench-render-"))
    try:
        song = work / "song.mid"
        songs.song(args.minutes, seed=7).save(song)
        if args.preset:
            preset_path = str(presets.resolve(args.preset))
        else:
            preset_path = str(untrained_preset(work / f"bench-{args.size}", general_midi_instruments(), args.size).path)
        env = {**os.environ, "SING_SYNTH_CACHE": str(work / "cache"), "SING_SYNTH_CACHE_SIZE": "8G"}
        print(f"# {cpu_name()}, {os.cpu_count()} cores; {load()}")
        print(f"# model: {presets.load(preset_path).name} ({args.preset or args.size}), {device}, "
              f"{args.threads} torch threads, batch {args.batch_size}, {args.precision}")
        fluid = [fluidsynth(song, work / "fluid.wav", args.rate)]
        cold = run_render(song, work / "cold.wav", preset_path, args, env)
        warm = run_render(song, work / "warm.wav", preset_path, args, env)
        fluid.append(fluidsynth(song, work / "fluid.wav", args.rate))
        extras = [
            ("warm, effects off", run_render(song, work / "dry.wav", preset_path, args, env, "--no-reverb", "--no-chorus")),
            ("warm, --normalize -16", run_render(song, work / "loud.wav", preset_path, args, env, "--normalize", "-16")),
            ("warm, --stems", run_render(song, work / "stems.wav", preset_path, args, env, "--stems")),
        ]
        speed = cold["model_notes_per_s"]  # measured in the cold render's process, right after it
        print(f"# after the renders: {load()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ref = sum(fluid) / 2 if None not in fluid else None
    audio = cold["audio_s"]
    print(f"song: {args.minutes:g} min, {audio:.1f} s of audio at {args.rate} Hz, {cold['needed']} distinct notes")
    cols = ("wall", "imports", "cache", "model", "mixing", "writing", "rest")
    print(f"{'render (a new process)':<24}" + "".join(f"{c:>9}" for c in cols) + f"{'vs fluidsynth':>15}{'RSS MiB':>9}")
    for name, r in (("cold", cold), ("warm", warm), *extras):
        parts = (r["wall_s"], r["imports_s"], r["disk_s"], r["setup_s"] + r["model_s"], r["mix_s"], r["write_s"],
                 r["other_s"])
        ratio = f"{r['wall_s'] / ref:.2f}x" if ref else "-"
        print(f"{name:<24}" + "".join(f"{p:9.2f}" for p in parts) + f"{ratio:>15}{r['rss_mib']:9.0f}")
    if ref:
        print(f"{'fluidsynth -ni -F':<24}{ref:9.2f}  (runs: {fluid[0]:.2f} before, {fluid[1]:.2f} after){'1.00x':>13}")
    gen = cold["rendered"] / cold["model_s"] if cold["model_s"] else float("nan")
    print(f"cold: {cold['rendered']} notes rendered, {cold['loaded']} from the cache; model loading (torch import, "
          f"weights) {cold['setup_s']:.2f} s; torch imported: cold {cold['torch']}, warm {warm['torch']}")
    print(f"generation: {gen:.0f} notes/s (model, resampling, cache writes) vs the model alone at batch 64: "
          f"{speed:.0f} notes/s -> {gen / speed:.0%}")
    if ref:
        mix = min(cold["mix_s"], warm["mix_s"])
        print(f"mixing: {mix:.2f} s ({audio / mix:.0f}x real time), {ref / mix:.1f}x faster than FluidSynth "
              f"({audio / ref:.0f}x real time)")
        print(f"targets: cold {cold['wall_s'] / ref:.2f}x (<= 0.5x), warm {warm['wall_s'] / ref:.2f}x (<= 0.2x), "
              f"mixing {ref / mix:.1f}x faster (>= 8x), generation {gen / speed:.0%} (>= 80%)")
    if args.json:
        Path(args.json).write_text(json.dumps({"cold": cold, "warm": warm, **{k: r for k, r in extras},
                                               "fluidsynth_s": fluid,
                                               "model_notes_per_s": speed, "device": device,
                                               "threads": args.threads}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
