"""The paper's spectral loss and waveform metrics, shared by training and evaluation.

l(x) = log(1 + |STFT(x)|^2) with n_fft 1024, hop 256, a Hann window and no centering;
the spectral loss is the mean absolute difference of l between two waveforms. Waveforms
follow the level convention int16 / 32767 (the 1 in the log is a floor near -48 dBFS).
"""

from __future__ import annotations

import torch

N_FFT = 1024
HOP = 256


def log_power_spectrogram(x: torch.Tensor, n_fft: int = N_FFT, hop: int = HOP) -> torch.Tensor:
    """``log(1 + |STFT|^2)`` of ``(batch, samples)`` -> ``(batch, freq, frames)``, in float32."""
    window = torch.hann_window(n_fft, device=x.device, dtype=torch.float32)
    spec = torch.stft(x.float(), n_fft, hop, window=window, center=False, return_complex=True)
    return torch.log1p(spec.real**2 + spec.imag**2)


def spectral_loss(x: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean absolute difference of log power spectrograms; ``reduction='none'`` gives one per item."""
    d = (log_power_spectrogram(x) - log_power_spectrogram(y)).abs()
    return d.mean() if reduction == "mean" else d.flatten(1).mean(1)


def waveform_mse(x: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    d = (x.float() - y.float()) ** 2
    return d.mean() if reduction == "mean" else d.flatten(1).mean(1)
