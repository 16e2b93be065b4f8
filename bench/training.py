"""Training speed: notes per second for each SING stage, float32 and bfloat16 autocast.

Measures optimizer steps of the real stage modules (train/stages.py) on real SoundFont notes
(the corpus render is included, as in training), for the `small` configuration with the
default preset's recipe settings (batch 32, 64-frame crops), plus whole-note steps for reference,
and the end-to-end step with the shipped recipe's tail gain (``tail_gain_db: 20``).
In the same run it measures a large float32 matrix multiply, so every figure also appears as a
ratio to what this machine does at that moment (the machine is shared and noisy).

    python bench/training.py [--size small] [--steps 5] [--batch 32]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import torch

from sing_synth.model import Encoder, Sing, SingConfig
from train.config import StageConfig
from train.data.soundfont import SoundFontCorpus
from train.stages import AutoencoderLoss, EndToEndLoss, SequenceLoss, loudest_frame

GM = "/usr/share/sounds/sf2/FluidR3_GM.sf2"


def matmul_flops(dtype=torch.float32, n=2048, reps=5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=("tiny", "small", "paper"))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--crop", type=int, default=64)
    args = parser.parse_args()

    corpus = SoundFontCorpus([GM], pitch_min=36, pitch_max=84, max_instruments=32)
    config = SingConfig.named(args.size, n_instruments=len(corpus.instruments))
    model, encoder = Sing(config), Encoder(config)
    rng = np.random.default_rng(0)
    notes_pool = corpus.notes()

    def batch():
        notes = [notes_pool[k] for k in rng.integers(0, len(notes_pool), args.batch)]
        wav = torch.from_numpy(corpus.load_batch(notes))
        padded = torch.nn.functional.pad(wav, (config.pad, config.pad))
        t = torch.tensor(notes)
        return (t[:, 2], t[:, 0], t[:, 1]), padded

    def crop():
        return int(rng.integers(0, config.n_frames - args.crop + 1)), args.crop

    ae = AutoencoderLoss(encoder, model.decoder, StageConfig())
    seq = SequenceLoss(model.generator)
    e2e = EndToEndLoss(model.generator, model.decoder, StageConfig())
    # the shipped recipe's tail gain; each note's loudest frame comes from the trainer's per-note
    # store (Trainer.loudest: found once per note), so it is found here outside the timed step
    e2e_tail = EndToEndLoss(model.generator, model.decoder, StageConfig(tail_gain_db=20.0))

    def update(opt, loss):
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def step_ae(opt, labels, padded, whole=False):
        g0, n = (0, config.n_frames) if whole else crop()
        update(opt, ae(padded, g0, n))

    def step_seq(opt, labels, padded):
        with torch.no_grad():
            target = encoder(padded)
        state = None
        for start in range(0, config.n_steps, 32):  # one optimizer step per chunk, as in training
            loss, state = seq(*labels, target[:, start : start + 32], start, state)
            update(opt, loss)
            state = tuple(s.detach() for s in state)

    def step_e2e(opt, labels, padded, whole=False):
        g0, n = (0, config.n_frames) if whole else crop()
        update(opt, e2e(*labels, padded, g0, n))

    def step_e2e_tail(opt, labels, padded, loudest):
        g0, n = crop()
        update(opt, e2e_tail(*labels, padded, g0, n, loudest))

    cases = [
        ("autoencoder", f"crop {args.crop}", ae, step_ae),
        ("autoencoder", "whole note", ae, lambda o, lb, p: step_ae(o, lb, p, True)),
        ("sequence", "9 chunks of 32", seq, step_seq),
        ("end_to_end", f"crop {args.crop}", e2e, step_e2e),
        ("end_to_end", "whole note", e2e, lambda o, lb, p: step_e2e(o, lb, p, True)),
        ("end_to_end", f"crop {args.crop}, tail 20 dB", e2e_tail, step_e2e_tail),
    ]
    peak = matmul_flops()
    print(f"# {args.size} model, batch {args.batch}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"# reference: float32 2048^3 matmul at {peak / 1e9:.1f} GFLOP/s, measured now")
    print(f"{'stage':<12} {'segment':<22} {'precision':<9} {'notes/s':>8} {'s/step':>7} {'vs matmul':>10}")
    for stage, segment, module, fn in cases:
        params = [p for p in module.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=1e-4)
        for precision in ("float32", "bfloat16"):
            ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bfloat16" else contextlib.nullcontext
            times = []
            for k in range(args.steps + 1):
                labels, padded = batch()
                extra = (loudest_frame(padded),) if module is e2e_tail else ()
                t = time.perf_counter()
                with ctx():
                    fn(opt, labels, padded, *extra)
                if k:
                    times.append(time.perf_counter() - t)
            dt = float(np.median(times))
            ref = matmul_flops(n=1024, reps=3)
            print(f"{stage:<12} {segment:<22} {precision:<9} {args.batch / dt:8.1f} {dt:7.3f} "
                  f"{args.batch / dt / (ref / 1e9):10.3f}  (notes/s per matmul GFLOP/s)")


if __name__ == "__main__":
    main()
