"""The three SING stages as modules whose forward returns the loss (so DDP can wrap them).

Segments: with ``crop`` = L decoder frames starting at frame g0, the decoder sees latent steps
[g0, g0 + L + context - 1) and outputs the samples that all their grains cover completely;
those are original samples [stride * g0 - trim, ...) i.e. padded samples from
``pad - trim + stride * g0``. With g0 = 0 and L = n_frames this is the whole note plus the
``trim`` margins, so cropped and full training share one code path.
"""

from __future__ import annotations

import torch
from torch import nn

from sing_synth.losses import log_power_spectrogram, spectral_loss, waveform_mse
from sing_synth.model import Decoder, Encoder, SequenceGenerator, SingConfig


def reconstruction_loss(kind: str, x: torch.Tensor, y: torch.Tensor, gain_db: float = 0.0,
                        note_weight: str = "none", floor: float = 0.02) -> torch.Tensor:
    """Training loss of a batch: ``kind`` (spectral or waveform), both signals amplified by
    ``gain_db``; with ``note_weight="silence"`` each note's loss is divided by the loss silence
    scores against it (see ``StageConfig.note_weight``)."""
    if kind == "waveform":
        return waveform_mse(x, y)
    g = 10.0 ** (gain_db / 20.0)
    if note_weight == "none":
        return spectral_loss(x * g, y * g)
    lx, ly = log_power_spectrogram(x * g), log_power_spectrogram(y * g)
    per_note = (lx - ly).abs().flatten(1).mean(1)
    silence = ly.detach().flatten(1).mean(1).clamp_min(floor)
    return (per_note / silence).mean()


def stage_loss(cfg, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return reconstruction_loss(cfg.loss, x, y, cfg.loss_gain_db, cfg.note_weight, cfg.weight_floor)


def segment_target(config: SingConfig, padded: torch.Tensor, g0: int, frames: int) -> torch.Tensor:
    start = config.pad - config.trim + config.stride * g0
    length = config.stride * (frames - config.kernel_size // config.stride + 1)
    return padded[:, start : start + length]


def encoder_input(config: SingConfig, padded: torch.Tensor, g0: int, frames: int) -> torch.Tensor:
    steps = frames + config.context_size - 1
    start = config.stride * g0
    return padded[:, start : start + (steps - 1) * config.stride + config.kernel_size]


class AutoencoderStage(nn.Module):
    """Stage 1: encoder + decoder reconstruct the (segment of the) note."""

    def __init__(self, encoder: Encoder, decoder: Decoder, cfg):
        super().__init__()
        self.encoder, self.decoder, self.cfg = encoder, decoder, cfg

    def forward(self, padded: torch.Tensor, g0: int, frames: int) -> torch.Tensor:
        c = self.decoder.config
        latent = self.encoder(encoder_input(c, padded, g0, frames))
        out = self.decoder(latent)
        return stage_loss(self.cfg, out, segment_target(c, padded, g0, frames))


class SequenceStage(nn.Module):
    """Stage 2: the LSTM predicts the frozen encoder's latents (MSE), one chunk at a time."""

    def __init__(self, generator: SequenceGenerator):
        super().__init__()
        self.generator = generator

    def forward(self, v, i, p, target: torch.Tensor, start: int, state):
        length = target.shape[1]
        out, state = self.generator(v, i, p, start=start, length=length, state=state)
        return torch.mean((out.float() - target.float()) ** 2), state


class EndToEndStage(nn.Module):
    """Stage 3: LSTM + decoder from (velocity, instrument, pitch) to audio."""

    def __init__(self, generator: SequenceGenerator, decoder: Decoder, cfg):
        super().__init__()
        self.generator, self.decoder, self.cfg = generator, decoder, cfg

    def forward(self, v, i, p, padded: torch.Tensor, g0: int, frames: int) -> torch.Tensor:
        c = self.decoder.config
        latent, _ = self.generator(v, i, p)
        out = self.decoder(latent[:, g0 : g0 + frames + c.context_size - 1])
        return stage_loss(self.cfg, out, segment_target(c, padded, g0, frames))
