"""The three SING stages. Each owns its loss module (a ``nn.Module`` whose forward returns the
loss, so DDP can wrap it), its batch drawing, its optimizer step and its validation metric; the
trainer (``solver.py``) runs ``STAGES`` in order without naming them.

Segments: with ``crop`` = L decoder frames starting at frame g0, the decoder sees latent steps
[g0, g0 + L + context - 1) and outputs the samples that all their grains cover completely;
those are original samples [stride * g0 - trim, ...) i.e. padded samples from
``pad - trim + stride * g0``. With g0 = 0 and L = n_frames this is the whole note plus the
``trim`` margins, so cropped and full training share one code path.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from sing_synth.losses import HOP, N_FFT, spectral_loss, waveform_mse
from sing_synth.model import Decoder, Encoder, SequenceGenerator, SingConfig

BAND_BINS = 32
LONG_FFT, LONG_HOP = 4096, 1024


def power_spectrogram(x: torch.Tensor, n_fft: int = N_FFT, hop: int = HOP) -> torch.Tensor:
    """``|STFT|^2`` (the spectral loss's settings by default), ``(batch, freq, frames)``."""
    window = torch.hann_window(n_fft, device=x.device, dtype=torch.float32)
    spec = torch.stft(x.float(), n_fft, hop, window=window, center=False, return_complex=True)
    return spec.real**2 + spec.imag**2


def loudest_frame(note: torch.Tensor) -> torch.Tensor:
    """``(batch,)`` the energy of each whole note's loudest spectral frame (``tail_gain_db``)."""
    with torch.no_grad():
        return power_spectrogram(note).sum(1).amax(1)


def tail_gains(energy: torch.Tensor, loudest: torch.Tensor, tail_db: float) -> torch.Tensor:
    """Power gains ``(batch, frames)`` for spectral frames of energies ``energy`` (batch, frames)
    of a segment of notes whose loudest frames hold ``loudest`` (batch,): each frame's energy
    under its note's loudest frame, clipped to 1 .. ``tail_db`` dB."""
    return (loudest[:, None] / energy.clamp_min(1e-20)).clamp(1.0, 10.0 ** (tail_db / 10.0))


def reconstruction_loss(kind: str, x: torch.Tensor, y: torch.Tensor, gain_db: float = 0.0,
                        note_weight: str = "none", floor: float = 0.02, band_loss: float = 0.0,
                        under_weight: float = 1.0, long_fft: float = 0.0, tail_db: float = 0.0,
                        loudest: torch.Tensor | None = None, no_tail: torch.Tensor | None = None) -> torch.Tensor:
    """Training loss of a batch: ``kind`` (spectral or waveform), both signals amplified by
    ``gain_db``; with ``note_weight="silence"`` each note's loss is divided by the loss silence
    scores against it; ``band_loss`` adds the coarse-band term; ``under_weight`` weighs the
    bins where the output is below the target; ``long_fft`` adds the long-window term (see
    ``StageConfig``); ``tail_db`` with ``loudest`` (batch,), the energy of each whole note's
    loudest frame (``loudest_frame``): the spectral frames' power gains on top of ``gain_db``
    (``tail_gains``; not for the notes marked in ``no_tail``, (batch,) bool, nor for the
    long-window term)."""
    if kind == "waveform":
        return waveform_mse(x, y)
    g2 = 10.0 ** (gain_db / 10.0)  # a number, or a tensor (batch,): a gain per note
    if isinstance(g2, torch.Tensor):
        g2 = g2.to(x.device, torch.float32)[:, None, None]
    py = power_spectrogram(y)
    gf = g2
    if tail_db and loudest is not None:
        frame_gain = tail_gains(py.detach().sum(1), loudest, tail_db)
        if no_tail is not None:
            frame_gain = torch.where(no_tail[:, None], torch.ones_like(frame_gain), frame_gain)
        gf = g2 * frame_gain[:, None, :]
    px, py = power_spectrogram(x) * gf, py * gf
    lx, ly = torch.log1p(px), torch.log1p(py)
    d = lx - ly
    if under_weight != 1.0:
        d = torch.where(d < 0, -under_weight * d, d)
    else:
        d = d.abs()
    per_note = d.flatten(1).mean(1)
    if band_loss:
        n = px.shape[1] // BAND_BINS * BAND_BINS
        bx = px[:, :n].unflatten(1, (-1, BAND_BINS)).sum(2)
        by = py[:, :n].unflatten(1, (-1, BAND_BINS)).sum(2)
        per_note = per_note + band_loss * (torch.log1p(bx) - torch.log1p(by)).abs().flatten(1).mean(1)
    if long_fft:
        lx2 = torch.log1p(power_spectrogram(x, LONG_FFT, LONG_HOP) * g2)
        ly2 = torch.log1p(power_spectrogram(y, LONG_FFT, LONG_HOP) * g2)
        per_note = per_note + long_fft * (lx2 - ly2).abs().flatten(1).mean(1)
    if note_weight == "silence":
        per_note = per_note / ly.detach().flatten(1).mean(1).clamp_min(floor)
    return per_note.mean()


def stage_loss(cfg, x: torch.Tensor, y: torch.Tensor, under_weight: float | None = None, gain_db=None,
               loudest: torch.Tensor | None = None, no_tail: torch.Tensor | None = None) -> torch.Tensor:
    """The stage's training loss of output ``x`` against target ``y``, segments of notes whose
    loudest frames hold ``loudest`` (``loudest_frame``, for ``tail_gain_db``; ``no_tail``:
    (batch,) bool, notes left out of it)."""
    under = cfg.under_weight if under_weight is None else under_weight
    gain = cfg.loss_gain_db if gain_db is None else gain_db
    return reconstruction_loss(cfg.loss, x, y, gain, cfg.note_weight, cfg.weight_floor, cfg.band_loss, under,
                               cfg.long_fft, cfg.tail_gain_db, loudest, no_tail)  # fmt: skip


def segment_target(config: SingConfig, padded: torch.Tensor, g0: int, frames: int) -> torch.Tensor:
    start = config.pad - config.trim + config.stride * g0
    length = config.stride * (frames - config.kernel_size // config.stride + 1)
    return padded[:, start : start + length]


def encoder_input(config: SingConfig, padded: torch.Tensor, g0: int, frames: int) -> torch.Tensor:
    steps = frames + config.context_size - 1
    start = config.stride * g0
    return padded[:, start : start + (steps - 1) * config.stride + config.kernel_size]


# Loss modules --------------------------------------------------------------------------------
class AutoencoderLoss(nn.Module):
    """Stage 1: encoder + decoder reconstruct the (segment of the) note."""

    def __init__(self, encoder: Encoder, decoder: Decoder, cfg):
        super().__init__()
        self.encoder, self.decoder, self.cfg = encoder, decoder, cfg
        self.under_weight = cfg.under_weight  # set per step by the stage (StageConfig.under_weight_at)

    def forward(self, padded: torch.Tensor, g0: int, frames: int, loudest: torch.Tensor | None = None) -> torch.Tensor:
        c = self.decoder.config
        latent = self.encoder(encoder_input(c, padded, g0, frames))
        out = self.decoder(latent)
        return stage_loss(self.cfg, out, segment_target(c, padded, g0, frames), self.under_weight, loudest=loudest)


class SequenceLoss(nn.Module):
    """Stage 2: the LSTM predicts the frozen encoder's latents (MSE), one chunk at a time."""

    def __init__(self, generator: SequenceGenerator):
        super().__init__()
        self.generator = generator

    def forward(self, v, i, p, target: torch.Tensor, start: int, state):
        length = target.shape[1]
        out, state = self.generator(v, i, p, start=start, length=length, state=state)
        return torch.mean((out.float() - target.float()) ** 2), state


class EndToEndLoss(nn.Module):
    """Stage 3: LSTM + decoder from (velocity, instrument, pitch) to audio."""

    def __init__(self, generator: SequenceGenerator, decoder: Decoder, cfg, kits: torch.Tensor | None = None):
        super().__init__()
        self.generator, self.decoder, self.cfg = generator, decoder, cfg
        self.under_weight = cfg.under_weight  # set per step by the stage (StageConfig.under_weight_at)
        self.kits = kits  # (n_instruments,) bool, on the notes' device: the drum kits (drum_gain_db, tail_gain_db)

    def forward(self, v, i, p, padded: torch.Tensor, g0: int, frames: int, loudest: torch.Tensor | None = None):
        c = self.decoder.config
        latent, _ = self.generator(v, i, p)
        out = self.decoder(latent[:, g0 : g0 + frames + c.context_size - 1])
        kit = None if self.kits is None else self.kits[i]
        gain = None
        if self.cfg.drum_gain_db:
            gain = self.cfg.loss_gain_db + self.cfg.drum_gain_db * kit.float()
        # the kits' tails are silence, which drum_gain_db weighs: tail_gain_db is for the other notes
        return stage_loss(self.cfg, out, segment_target(c, padded, g0, frames), self.under_weight, gain, loudest, kit)


# Stages ---------------------------------------------------------------------------------------
class Stage:
    """One stage of a run: ``trainer`` gives the model, the data and the options of the recipe."""

    name = ""
    trains_encoder = False

    def __init__(self, trainer, cfg, index: int):
        self.trainer, self.cfg, self.index = trainer, cfg, index
        self.config = trainer.config
        self.loss = self.make_loss()

    def make_loss(self) -> nn.Module:
        raise NotImplementedError

    def begin(self) -> None:
        """Called before the stage's first step (not on resume)."""

    def latents(self, notes) -> torch.Tensor:
        """The latent sequences the decoder sees for ``notes`` in this stage."""
        return self.trainer.model.generator(*self.trainer.labels(notes))[0]

    def revive(self, step: int) -> list[int]:
        """Revive the decoder's dead channels on 128 notes drawn alike from every group."""
        from .init import revive

        t = self.trainer
        rng = np.random.default_rng([t.recipe.seed, self.index, step, 7])
        with torch.no_grad():
            latent = self.latents(t.draw(rng, 128, "balanced")).float()
        return revive(t.model.decoder, latent, seed=t.recipe.seed * 100003 + step)

    def batch(self, step: int):
        """The notes of optimizer step ``step`` and the generator that drew them (seeded by step)."""
        t = self.trainer
        rng = np.random.default_rng([t.recipe.seed, self.index, step, t.rank])
        return t.draw(rng, self.cfg.batch, self.cfg.sampling), rng

    def crop(self, rng) -> tuple[int, int]:
        n, frames = self.config.n_frames, self.cfg.crop
        if not frames or frames >= n:
            return 0, n
        return int(rng.integers(0, n - frames + 1)), frames

    def step(self, module, params, optimizer, notes, rng) -> float:
        """One optimizer step of a spectral/waveform stage; returns the batch loss."""
        t = self.trainer
        padded = t.padded(notes)
        g0, frames = self.crop(rng)
        loudest = t.loudest(notes, padded) if self.cfg.tail_gain_db and self.cfg.loss == "spectral" else None
        self.loss.under_weight = self.cfg.under_weight_at(t.step)
        optimizer.zero_grad(set_to_none=True)
        with t.autocast():
            loss = self.forward(module, notes, padded, g0, frames, loudest)
        loss.backward()
        t.clip(params, self.cfg)
        optimizer.step()
        return float(loss.detach())

    def forward(self, module, notes, padded, g0, frames, loudest=None):
        """The loss module on a batch; ``loudest``: its notes' loudest frames, for ``tail_gain_db``."""
        raise NotImplementedError

    def validate(self, notes, padded) -> torch.Tensor:
        """The stage's validation metric on whole notes (the paper's loss, whatever the training loss)."""
        raise NotImplementedError


class AutoencoderStage(Stage):
    name = "autoencoder"
    trains_encoder = True

    def make_loss(self):
        return AutoencoderLoss(self.trainer.encoder, self.trainer.model.decoder, self.cfg)

    def begin(self):
        if self.trainer.recipe.init == "data":
            self.trainer.data_init()

    def latents(self, notes):
        return self.trainer.encoder(self.trainer.padded(notes))

    def forward(self, module, notes, padded, g0, frames, loudest=None):
        return module(padded, g0, frames, loudest)

    def validate(self, notes, padded):
        t, c = self.trainer, self.config
        out = t.model.decode(t.encoder(padded))
        return spectral_loss(out, padded[:, c.pad : c.pad + c.note_samples])


class SequenceStage(Stage):
    name = "sequence"

    def make_loss(self):
        return SequenceLoss(self.trainer.model.generator)

    def step(self, module, params, optimizer, notes, rng) -> float:
        """Truncated backpropagation: one optimizer step per ``chunk`` LSTM steps, state carried over."""
        t, c = self.trainer, self.config
        padded = t.padded(notes)
        with torch.no_grad(), t.autocast():
            target = t.encoder(padded).float()
        state, total = None, 0.0
        for start in range(0, c.n_steps, self.cfg.chunk):
            optimizer.zero_grad(set_to_none=True)
            with t.autocast():
                loss, state = module(*t.labels(notes), target[:, start : start + self.cfg.chunk], start, state)
            loss.backward()
            t.clip(params, self.cfg)
            optimizer.step()
            state = tuple(s.detach() for s in state)
            total += float(loss.detach())
        return total / math.ceil(c.n_steps / self.cfg.chunk)

    def validate(self, notes, padded):
        t = self.trainer
        latent, _ = t.model.generator(*t.labels(notes))
        return torch.mean((latent.float() - t.encoder(padded).float()) ** 2)


class EndToEndStage(Stage):
    name = "end_to_end"

    def make_loss(self):
        t = self.trainer
        kits = torch.zeros(t.config.n_instruments, dtype=torch.bool, device=t.device)
        kits[[x.id for x in t.corpus.instruments if x.drum_kit]] = True
        return EndToEndLoss(t.model.generator, t.model.decoder, self.cfg, kits)

    def forward(self, module, notes, padded, g0, frames, loudest=None):
        return module(*self.trainer.labels(notes), padded, g0, frames, loudest)

    def validate(self, notes, padded):
        c = self.config
        return spectral_loss(self.trainer.model(*self.trainer.labels(notes)), padded[:, c.pad : c.pad + c.note_samples])


STAGES = {cls.name: cls for cls in (AutoencoderStage, SequenceStage, EndToEndStage)}
