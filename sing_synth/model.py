"""The SING network: a sequence generator (embeddings + LSTM) and a windowed convolutional decoder.

Shapes follow the paper and its reference implementation (DESIGN.md section 1): a 4 s note at
16 kHz is 64,000 samples; the LSTM runs ``n_steps`` = 265 steps over the padded waveform's
frames; the context convolution (no padding) leaves 257 frames; the transposed convolution
(kernel 1024, stride 256, padding 768) gives 65,024 samples, trimmed by 512 per side.

Tensors are kept channel-last (batch, time, channels) so that every layer but the LSTM is a
plain matrix multiply; the weights keep PyTorch's Conv1d/ConvTranspose1d layouts.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import SingConfig


def squared_hann(size: int) -> torch.Tensor:
    return torch.hann_window(size, periodic=True) ** 2


class SequenceGenerator(nn.Module):
    """Embeddings of (velocity, instrument, pitch) and time, fed at every step to an LSTM."""

    def __init__(self, config: SingConfig):
        super().__init__()
        c = config
        self.config = c
        self.velocity = nn.Embedding(c.n_velocities, c.velocity_dim)
        self.instrument = nn.Embedding(c.n_instruments, c.instrument_dim)
        self.pitch = nn.Embedding(c.n_pitches, c.pitch_dim)
        self.time = nn.Embedding(c.n_steps, c.time_dim)
        input_dim = c.velocity_dim + c.instrument_dim + c.pitch_dim + c.time_dim
        self.lstm = nn.LSTM(input_dim, c.lstm_hidden, num_layers=c.lstm_layers, batch_first=True)
        self.output = nn.Linear(c.lstm_hidden, c.latent_dim)

    def forward(self, velocity, instrument, pitch, start: int = 0, length: int | None = None, state=None):
        """Latent frames ``(batch, length, latent_dim)`` for steps ``start .. start+length``.

        ``instrument`` holds instrument ids, or (floating point, ``(batch, instrument_dim)``)
        instrument embeddings themselves: a blend of two instruments, or one being learned.
        ``state`` is the LSTM's (h, c) carried between calls (truncated backpropagation);
        the new state is returned beside the output.
        """
        length = self.config.n_steps - start if length is None else length
        inst = instrument if instrument.is_floating_point() else self.instrument(instrument)
        static = torch.cat([self.velocity(velocity), inst.to(self.instrument.weight.dtype), self.pitch(pitch)], dim=-1)
        steps = torch.arange(start, start + length, device=static.device)
        time = self.time(steps).to(static.dtype)
        batch = static.shape[0]
        x = torch.cat(
            [static[:, None, :].expand(batch, length, static.shape[-1]), time[None].expand(batch, -1, -1)], dim=-1
        )
        y, state = self.lstm(x, state)
        return self.output(y), state


class Decoder(nn.Module):
    """Context conv + ReLU, 1x1 convs + ReLU, transposed conv whose kernel is windowed by hann**2."""

    def __init__(self, config: SingConfig):
        super().__init__()
        c = config
        self.config = c
        self.context = nn.Conv1d(c.latent_dim, c.channels, c.context_size)
        self.rewrite = nn.ModuleList([nn.Conv1d(c.channels, c.channels, 1) for _ in range(2)])
        self.synthesis = nn.ConvTranspose1d(
            c.channels, 1, c.kernel_size, stride=c.stride, padding=c.decoder_padding
        )
        self.register_buffer("window", squared_hann(c.kernel_size), persistent=False)

    #: On the CPU without autograd, at most this many notes are decoded at a time: the same
    #: samples, with intermediates that stay in cache (bench/generation.py: a batch of 64
    #: small-model notes decodes about 30% faster; batches up to 16 and the paper size: no change).
    cpu_chunk = 8

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """``(batch, steps, latent_dim)`` -> ``(batch, decoder_samples)``."""
        if latent.device.type == "cpu" and latent.shape[0] > self.cpu_chunk and not torch.is_grad_enabled():
            return torch.cat([self._decode(part) for part in latent.split(self.cpu_chunk)])
        return self._decode(latent)

    def hidden(self, latent: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations ``(batch, frames, channels)``, after its ReLU."""
        c = self.config
        w = self.context.weight  # (C, D, K): unfold gives (B, T', D, K) in the same order
        x = latent.unfold(1, c.context_size, 1).flatten(2)
        x = F.relu(F.linear(x, w.flatten(1), self.context.bias))
        for conv in self.rewrite:
            x = F.relu(F.linear(x, conv.weight[..., 0], conv.bias))
        return x

    def _decode(self, latent: torch.Tensor) -> torch.Tensor:
        c = self.config
        x = self.hidden(latent)
        kernel = self.synthesis.weight[:, 0, :] * self.window.to(x.dtype)  # (C, kernel)
        frames = x @ kernel  # (B, F, kernel): each frame's windowed grain
        return overlap_add(frames, c.stride, c.decoder_padding) + self.synthesis.bias


def overlap_add(frames: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """Sum grains ``(batch, n, kernel)`` placed every ``stride`` samples, as ConvTranspose1d does."""
    batch, n, kernel = frames.shape
    r = kernel // stride
    parts = frames.reshape(batch, n, r, stride)
    out = frames.new_zeros(batch, n + r - 1, stride)
    for q in range(r):
        out[:, q : q + n] += parts[:, :, q]
    out = out.reshape(batch, -1)
    return out[:, padding : out.shape[1] - padding]


class Encoder(nn.Module):
    """Mirror of the decoder, for the autoencoder stage: windowed strided conv, 1x1 convs."""

    def __init__(self, config: SingConfig):
        super().__init__()
        c = config
        self.config = c
        self.analysis = nn.Conv1d(1, c.channels, c.kernel_size, stride=c.stride)
        self.rewrite = nn.ModuleList([nn.Conv1d(c.channels, c.channels, 1) for _ in range(2)])
        self.output = nn.Conv1d(c.channels, c.latent_dim, 1)
        self.register_buffer("window", squared_hann(c.kernel_size), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``(batch, padded_samples)`` -> ``(batch, n_steps, latent_dim)``."""
        c = self.config
        frames = wav.unfold(-1, c.kernel_size, c.stride)
        kernel = self.analysis.weight[:, 0, :] * self.window.to(wav.dtype)
        x = F.relu(F.linear(frames, kernel, self.analysis.bias))
        for conv in self.rewrite:
            x = F.relu(F.linear(x, conv.weight[..., 0], conv.bias))
        return F.linear(x, self.output.weight[..., 0], self.output.bias)


class Sing(nn.Module):
    """(velocity class, instrument, pitch) -> 4 s waveform at ``config.sample_rate``.

    ``level_db`` (instrument, pitch) is a gain applied to each generated note, measured after
    training by ``python -m train calibrate`` (0 dB until then, and for presets made before it):
    the spectral loss leaves notes quieter than their recordings, by an amount that depends on
    the instrument and the pitch. It is stored with the weights, so it is part of their sha256.
    """

    def __init__(self, config: SingConfig):
        super().__init__()
        self.config = config
        self.generator = SequenceGenerator(config)
        self.decoder = Decoder(config)
        self.register_buffer("level_db", torch.zeros(config.n_instruments, config.n_pitches))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # weights saved before the calibration (presets, checkpoints) have no level_db: 0 dB
        state_dict.setdefault(prefix + "level_db", torch.zeros_like(self.level_db))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent frames -> trimmed waveform ``(batch, note_samples)``."""
        t = self.config.trim
        return self.decoder(latent)[:, t : t + self.config.note_samples]

    def forward(self, velocity, instrument, pitch, gain_db: torch.Tensor | None = None) -> torch.Tensor:
        """Notes ``(batch, note_samples)``. ``instrument`` holds ids, whose calibrated gain is
        applied, or embeddings (see :class:`SequenceGenerator`), which get ``gain_db`` (default 0 dB)."""
        latent, _ = self.generator(velocity, instrument, pitch)
        wav = self.decode(latent)
        if gain_db is None and not instrument.is_floating_point():
            gain_db = self.level_db[instrument, pitch]
        if gain_db is not None:
            wav = wav * torch.pow(10.0, gain_db.to(wav.dtype) / 20.0)[:, None]
        return wav


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
