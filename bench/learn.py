"""Learning an instrument the preset never heard, from 12 notes, against a sampler of the same notes.

For each instrument of a SoundFont outside the training corpus (Debian's csound-soundfont,
``sf_GMbank.sf2``, and opl3-soundfont, ``OPL-3_FM_128M.sf2``): 12 notes (three per octave,
pitches 36-83, velocity 100) are written as WAV files and learned with ``sing_synth.learn``;
the learned instrument then plays the instrument's other pitches of 36-83, which are compared
with the real notes (the paper's spectral L1, pitch accuracy by the project's estimator) beside
a re-pitch sampler built from the same 12 notes (nearest recorded pitch, resampled). The
learning time is printed beside the machine's float32 matmul peak measured in the same run.

    python bench/learn.py [--preset sing-gm] [--instruments 4] [--max-steps 150]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from sing_synth import dsp
from sing_synth import preset as presets
from sing_synth.learn import learn
from sing_synth.losses import spectral_loss
from train.data.soundfont import SoundFontCorpus

FONTS = ("/usr/share/sounds/sf2/sf_GMbank.sf2", "/usr/share/sounds/sf2/OPL-3_FM_128M.sf2")
LEARN_PITCHES = (36, 40, 44, 48, 52, 56, 60, 64, 68, 72, 76, 80)  # three per octave, 36-83
VCLASS = 3  # velocity 100
# General MIDI programs tried, in order, from the held-out fonts: piano, guitar, strings, brass, reed, pipe, organ, lead
PROGRAMS = (0, 24, 48, 56, 65, 73, 19, 80)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def matmul_peak() -> float:
    a = torch.randn(2048, 2048)
    a @ a
    t = time.perf_counter()
    for _ in range(4):
        a @ a
    return 4 * 2 * 2048**3 / (time.perf_counter() - t) / 1e9


def in_tune(wav: np.ndarray, pitch: int, rate: int) -> bool:
    f0 = dsp.estimate_f0(wav[4000:20000], rate)
    return f0 > 0 and abs(dsp.cents(f0, dsp.midi_to_hz(pitch))) <= 50


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="sing-gm")
    ap.add_argument("--instruments", type=int, default=4)
    ap.add_argument("--max-steps", type=int, default=150)
    args = ap.parse_args()
    fonts = [f for f in FONTS if Path(f).is_file()]
    if not fonts:
        raise SystemExit("bench/learn.py: install Debian's csound-soundfont or opl3-soundfont")
    base = presets.load(args.preset)
    peak = matmul_peak()
    print(f"machine: {cpu_name()}, {torch.get_num_threads()} torch threads, "
          f"float32 2048^3 matmul {peak:.0f} GFLOP/s; preset {base.name} ({base.sha256[:12]})")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = SoundFontCorpus(fonts, pitch_min=36, pitch_max=83, cache_dir=tmp)
        chosen = []
        for prog in PROGRAMS:
            for inst in corpus.instruments:
                if not inst.drum_kit and inst.gm_program == prog and set(LEARN_PITCHES) <= set(corpus.pitches[inst.id]):
                    chosen.append(inst)
                    break
            if len(chosen) == args.instruments:
                break
        for inst in chosen:
            rec = Path(tmp) / f"rec{inst.id}"
            rec.mkdir()
            learned = {p: corpus.load(inst.id, p, VCLASS) for p in LEARN_PITCHES}
            for p, wav in learned.items():
                soundfile.write(str(rec / f"note_{p}_v100.wav"), wav, corpus.sample_rate)
            t0 = time.perf_counter()
            out = learn(rec, inst.name, base=base.path, output=Path(tmp) / f"preset{inst.id}", max_steps=args.max_steps)
            seconds = time.perf_counter() - t0
            preset = presets.load(out)
            model = preset.load_model()
            new_id = preset.instrument(inst.name).id
            held = [p for p in corpus.pitches[inst.id] if p not in LEARN_PITCHES]
            real = torch.from_numpy(corpus.load_batch([(inst.id, p, VCLASS) for p in held]))
            with torch.inference_mode():
                gen = torch.cat([model(torch.full((len(c),), VCLASS), torch.full((len(c),), new_id), torch.tensor(c))
                                 for c in np.array_split(held, max(1, len(held) // 16))])
            sampler = torch.from_numpy(np.stack([
                dsp.repitch(learned[q], p - q) for p in held for q in [min(LEARN_PITCHES, key=lambda q: (abs(q - p), q))]
            ]))
            info = preset.training["learned"]
            rows.append({
                "instrument": inst.name, "seconds": seconds, "steps": info["steps"], "start": info["started_from"],
                "l1": float(spectral_loss(gen, real)), "l1_sampler": float(spectral_loss(sampler, real)),
                "pitch": np.mean([in_tune(g, p, corpus.sample_rate) for g, p in zip(gen.numpy(), held)]),
                "pitch_real": np.mean([in_tune(r, p, corpus.sample_rate) for r, p in zip(real.numpy(), held)]),
                "notes": len(held),
            })
            r = rows[-1]
            print(f"  {r['instrument']}: {r['seconds']:.0f} s, {r['steps']} steps from {r['start']!r}", flush=True)
    print()
    print("| held-out instrument | learn time (12 notes) | steps | started from | L1 learned | L1 re-pitch sampler | pitch learned | pitch real | notes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['instrument']} | {r['seconds']:.0f} s | {r['steps']} | {r['start']} | {r['l1']:.4f} | "
              f"{r['l1_sampler']:.4f} | {100 * r['pitch']:.0f}% | {100 * r['pitch_real']:.0f}% | {r['notes']} |")


if __name__ == "__main__":
    main()
