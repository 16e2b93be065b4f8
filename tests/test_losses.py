"""The paper's spectral loss against an independent NumPy computation."""

import numpy as np
import torch

from sing_synth.losses import spectral_loss, waveform_mse


def numpy_log_power(x: np.ndarray) -> np.ndarray:
    n_fft, hop = 1024, 256
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    frames = np.stack([x[s : s + n_fft] * window for s in range(0, len(x) - n_fft + 1, hop)])
    spec = np.fft.rfft(frames, axis=1)
    return np.log1p(np.abs(spec) ** 2)


def test_spectral_loss_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 16000)) * 0.1
    y = rng.standard_normal((3, 16000)) * 0.3
    expected = np.mean([np.abs(numpy_log_power(a) - numpy_log_power(b)).mean() for a, b in zip(x, y)])
    got = spectral_loss(torch.from_numpy(x).float(), torch.from_numpy(y).float())
    assert abs(float(got) - expected) < 1e-5 * max(1.0, expected)
    per_item = spectral_loss(torch.from_numpy(x).float(), torch.from_numpy(y).float(), reduction="none")
    assert per_item.shape == (3,)
    assert float(spectral_loss(torch.from_numpy(x).float(), torch.from_numpy(x).float())) == 0.0


def test_spectral_loss_has_a_floor_near_minus_48_dbfs():
    t = np.arange(16000) / 16000
    quiet = torch.from_numpy(0.001 * np.sin(2 * np.pi * 440 * t)).float()[None]  # -60 dBFS
    assert float(spectral_loss(quiet, torch.zeros_like(quiet))) < 0.01


def test_waveform_mse():
    x, y = torch.ones(2, 10), torch.zeros(2, 10)
    assert float(waveform_mse(x, y)) == 1.0
    assert waveform_mse(x, y, reduction="none").tolist() == [1.0, 1.0]
