"""Generation speed: seconds of audio per second for the `paper` and `small` models.

For batch 1, 16 and 64, float32 and bfloat16 (the whole model cast), on the CPU (or CUDA with
--model-device cuda). In the same run it measures large matrix multiplies in both precisions, so each
line also shows achieved FLOP/s (the model's FLOPs per note counted from its configuration) as a
fraction of that measured peak. Untrained weights: speed does not depend on training.

Each line times the two halves of the forward pass separately (the sequence generator, which is
the LSTM, and the convolutional decoder; the model's forward is exactly one then the other) and,
on the CPU, the renderer's resampling of the batch from 16 kHz to 44.1 kHz (not counted in
audio s/s). The machine's load average is printed before and after: on a shared machine other
processes take cores, and with more torch threads than free cores the figures drop sharply.

    python bench/generation.py [--sizes paper small] [--batches 1 16 64] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from sing_synth import dsp
from sing_synth.model import Sing, SingConfig

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def flops_per_note(c: SingConfig) -> float:
    """Multiply-adds x 2 of one 4 s note: LSTM, output linear, context conv, 1x1 convs, synthesis."""
    in_dim = c.velocity_dim + c.instrument_dim + c.pitch_dim + c.time_dim
    lstm = sum(2 * 4 * c.lstm_hidden * ((in_dim if k == 0 else c.lstm_hidden) + c.lstm_hidden) for k in range(c.lstm_layers))
    per_step = lstm + 2 * c.lstm_hidden * c.latent_dim
    per_frame = 2 * c.latent_dim * c.context_size * c.channels + 2 * 2 * c.channels**2 + 2 * c.channels * c.kernel_size
    return per_step * c.n_steps + per_frame * c.n_frames


def sync(device: str) -> None:
    if device != "cpu":
        torch.cuda.synchronize()


def matmul_peak(dtype: torch.dtype, device: str, n: int = 4096, seconds: float = 2.0) -> float:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
        sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def best_time(fn, device: str, min_seconds: float, max_reps: int = 20) -> float:
    """Fastest of several calls after a warm-up, repeated for at least ``min_seconds`` (at least once)."""
    fn()
    sync(device)
    times, t_all = [], time.perf_counter()
    while not times or (time.perf_counter() - t_all < min_seconds and len(times) < max_reps):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return min(times)


def time_batch(model: Sing, batch: int, device: str, min_seconds: float) -> tuple[float, float, np.ndarray]:
    """Seconds per batch of the generator and of the decoder, and the batch's waveforms."""
    v = torch.randint(0, 5, (batch,), device=device)
    i = torch.randint(0, model.config.n_instruments, (batch,), device=device)
    p = torch.randint(24, 96, (batch,), device=device)
    with torch.inference_mode():
        t_gen = best_time(lambda: model.generator(v, i, p), device, min_seconds / 2)
        latent, _ = model.generator(v, i, p)
        t_dec = best_time(lambda: model.decode(latent), device, min_seconds / 2)
        wav = model.decode(latent).float().cpu().numpy()
    return t_gen, t_dec, wav


def busy_cores(seconds: float = 1.0) -> float | None:
    """Cores kept busy by other processes, sampled from /proc/stat over ``seconds`` (None if unknown)."""
    def sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / max(1, total1 - total0))


def load() -> str:
    one, five, _ = os.getloadavg()
    busy = busy_cores()
    now = f"{busy:.1f} cores busy now, " if busy is not None else ""
    return f"{now}load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["paper", "small"], choices=["tiny", "small", "paper"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16, 64])
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=list(PRECISIONS))
    parser.add_argument("--model-device", default="cpu", help="where the model runs: cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="repeat each case at least this long")
    parser.add_argument("--rate", type=int, default=44100, help="output rate of the resampling column")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    threads = torch.get_num_threads()
    print(f"# torch {torch.__version__}, device {args.model_device}, {threads} threads; {load()}")
    busy = busy_cores()
    if args.model_device == "cpu" and busy is not None and busy + threads > (os.cpu_count() or 1) + 0.3:
        print(f"# note: other processes are using these cores: with {threads} torch threads the figures are lower "
              "than on an idle machine (fewer threads than free cores avoids stalls)")
    print("# peak: a 4096^3 matmul in the line's precision, measured just before each model/precision group")
    print("# audio s/s counts the model only (generator + decoder, timed apart); lstm/decoder/resample in ms per note;")
    print(f"# resample: the renderer's 16 kHz -> {args.rate} Hz of the whole batch (dsp.resample, CPU, not in audio s/s)")
    print(f"{'model':<6} {'params':>7} {'GFLOP/note':>10} {'precision':<9} {'batch':>5} "
          f"{'audio s/s':>10} {'notes/s':>8} {'GFLOP/s':>8} {'of peak':>8} {'lstm':>7} {'decoder':>7} {'resample':>8}")
    for size in args.sizes:
        config = SingConfig.named(size, n_instruments=1006 if size == "paper" else 669)
        torch.manual_seed(0)
        base = Sing(config).eval()
        params = sum(p.numel() for p in base.parameters()) / 1e6
        fpn = flops_per_note(config)
        seconds_per_note = config.note_samples / config.sample_rate
        for precision in args.precisions:
            model = Sing(config).eval()
            model.load_state_dict(base.state_dict())
            model = model.to(args.model_device, PRECISIONS[precision])
            peak = matmul_peak(PRECISIONS[precision], args.model_device)
            print(f"# peak now: {precision} {peak / 1e9:.1f} GFLOP/s; {load()}", flush=True)
            for batch in args.batches:
                t_gen, t_dec, wav = time_batch(model, batch, args.model_device, args.min_seconds)
                t_res = best_time(lambda w=wav, r=config.sample_rate: dsp.resample(w, r, args.rate), "cpu", 0.5, 5)
                notes = batch / (t_gen + t_dec)
                achieved = notes * fpn
                print(f"{size:<6} {params:6.1f}M {fpn / 1e9:10.2f} {precision:<9} {batch:5d} "
                      f"{notes * seconds_per_note:10.1f} {notes:8.1f} {achieved / 1e9:8.1f} "
                      f"{achieved / peak:8.1%} {1e3 * t_gen / batch:7.2f} {1e3 * t_dec / batch:7.2f} "
                      f"{1e3 * t_res / batch:8.2f}", flush=True)
    print(f"# after the run: {load()}")


if __name__ == "__main__":
    main()
