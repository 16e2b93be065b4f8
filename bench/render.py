"""Rendering speed: a multi-track General MIDI song through `sing-synth render`, against FluidSynth.

Generates a deterministic song of a few minutes (examples/make_examples.py: piano with pedal,
bass, strings, lead with bends, drums, tempo changes), then renders it
  - cold: an empty note cache, so every note the song needs goes through the model
    (model loading, inference and resampling included), then the engine;
  - warm: the same notes already rendered (the same note source passed again): engine only,
    with the reverb and chorus buses (the default), without them (``--no-reverb --no-chorus``),
    and with the default effects plus ``--normalize -16`` and plus ``--stems``;
  - with FluidSynth (`fluidsynth -ni -F out.wav FluidR3_GM.sf2 song.mid`) in the same run,
and prints real-time factors, the ratios to FluidSynth and peak memory.

Without --preset it builds an untrained preset of the chosen size (weights do not change the
speed) with a General MIDI table of 128 programs and a drum kit.

    python bench/render.py [--minutes 3] [--size small] [--threads 1] [--model-device cpu]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"


def peak_rss_mib(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--preset", help="a preset name or directory (default: an untrained one of --size)")
    parser.add_argument("--size", default="small", choices=("tiny", "small", "paper"))
    parser.add_argument("--model-device", default="auto", help="where the model runs: auto, cpu, cuda")
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rate", type=int, default=44100)
    parser.add_argument("--block", type=int, default=8192)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    import torch

    from sing_synth import preset as presets
    from sing_synth.effects import EffectSettings
    from sing_synth.note_source import DictNoteSource
    from sing_synth.render import render_file
    from sing_synth.testing import songs
    from sing_synth.testing.presets import general_midi_instruments, untrained_preset

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-render-"))
    try:
        song = work / "song.mid"
        songs.song(args.minutes, seed=7).save(song)
        if args.preset:
            preset = presets.load(args.preset)
        else:
            instruments = general_midi_instruments()
            preset = untrained_preset(work / f"bench-{args.size}", instruments, args.size)
        kw = dict(rate=args.rate, block=args.block, model_device=args.model_device, precision=args.precision)
        source = DictNoteSource(rate=args.rate)
        rss0 = peak_rss_mib()
        cold = render_file(song, work / "cold.wav", preset, source=source, batch_size=args.batch_size, **kw)
        rss_cold = peak_rss_mib()
        warm = render_file(song, work / "warm.wav", preset, source=source, **kw)
        rss_warm = peak_rss_mib()
        dry = render_file(song, work / "dry.wav", preset, source=source, effects=EffectSettings.dry(), **kw)
        loud = render_file(song, work / "loud.wav", preset, source=source, normalize=-16.0, **kw)
        stems = render_file(song, work / "stems.wav", preset, source=source, stems=True, **kw)
        rss_extra = peak_rss_mib()
        cache_mib = sum(w.nbytes for w in source.notes.values()) / 2**20

        fluid = None
        if shutil.which("fluidsynth") and Path(FONT).is_file():
            # run through a small Python parent so that the child's peak RSS is FluidSynth's own
            # (a child forked from this process would count this process's pages until its exec)
            cmd = ["fluidsynth", "-ni", "-q", "-r", str(args.rate), "-F", str(work / "fluid.wav"), FONT, str(song)]
            probe = (
                "import resource, subprocess, sys, time; t = time.perf_counter(); "
                "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
                "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
            )
            out = subprocess.run([sys.executable, "-c", probe, *cmd], check=True, capture_output=True, text=True)
            fluid_s, fluid_kib = out.stdout.split()
            fluid = {"seconds": float(fluid_s), "audio_s": cold.duration, "peak_rss_mib": int(fluid_kib) / 1024}

        from sing_synth.renderer import pick_device

        device = str(pick_device(args.model_device))
        print(
            f"song: {args.minutes:g} min, {cold.duration:.1f} s of audio at {args.rate} Hz, {cold.stats['notes_played']} "
            f"note-ons, {cold.notes_needed} distinct notes ({cache_mib:.0f} MiB rendered)"
        )
        print(
            f"model: {preset.name} ({args.preset or args.size}), {device}, {args.precision}, "
            f"torch threads {torch.get_num_threads()}, block {args.block}"
        )
        rows = [
            ("cold (model + engine)", cold.total_seconds, cold.duration, rss_cold),
            ("warm (engine only)", warm.total_seconds, warm.duration, rss_warm),
            ("warm, effects off", dry.total_seconds, dry.duration, rss_extra),
            ("warm, --normalize -16", loud.total_seconds, loud.duration, rss_extra),
            (f"warm, --stems ({len(stems.stems)})", stems.total_seconds, stems.duration, rss_extra),
        ]
        if fluid:
            rows.append(("fluidsynth -ni -F", fluid["seconds"], fluid["audio_s"], fluid["peak_rss_mib"]))
        print(f"{'render':<26}{'seconds':>9}{'x real time':>13}{'vs fluidsynth':>15}{'peak RSS MiB':>14}")
        for name, seconds, audio, rss in rows:
            rtf = audio / seconds
            ratio = f"{(fluid['seconds'] / seconds):.2f}x" if fluid else "-"
            print(f"{name:<26}{seconds:>9.2f}{rtf:>13.1f}{ratio:>15}{rss:>14.0f}")
        n = loud.loudness
        print(f"--normalize -16: {n.before_lufs:.1f} -> {n.after_lufs:.1f} LUFS, true peak {n.before_peak_db:.1f} -> "
              f"{n.after_peak_db:.1f} dBTP (limiter up to {n.limited_db:.1f} dB); peak RSS after the warm renders is the "
              "process's peak so far")
        print(
            f"cold breakdown: notes {cold.note_seconds:.2f} s ({cold.notes_rendered} notes, "
            f"{cold.notes_rendered / max(cold.note_seconds, 1e-9):.0f} notes/s), engine + writer {cold.mix_seconds:.2f} s; "
            f"RSS before rendering {rss0:.0f} MiB"
        )
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "minutes": args.minutes,
                        "audio_s": cold.duration,
                        "distinct_notes": cold.notes_needed,
                        "cold_s": cold.total_seconds,
                        "cold_notes_s": cold.note_seconds,
                        "warm_s": warm.total_seconds,
                        "warm_dry_s": dry.total_seconds,
                        "warm_normalize_s": loud.total_seconds,
                        "warm_stems_s": stems.total_seconds,
                        "fluidsynth_s": fluid["seconds"] if fluid else None,
                        "peak_rss_cold_mib": rss_cold,
                        "peak_rss_warm_mib": rss_warm,
                        "device": device,
                        "threads": torch.get_num_threads(),
                        "preset": preset.name,
                    },
                    indent=2,
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
