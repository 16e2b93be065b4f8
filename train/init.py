"""Data-dependent initialisation of the autoencoder, so that no ReLU channel starts dead.

With PyTorch's default initialisation and waveforms near -20 dBFS, the encoder's latents are
tiny (std about 0.03), so every decoder pre-activation is its bias plus almost nothing: the half
of the channels whose bias is negative are zero for every note and never receive a gradient
(measured: 254 of 512 last-layer channels alive at step 0). Here each layer, in order, is
rescaled and shifted on a real batch so that every channel's pre-activation has zero mean and
unit variance over the batch (the data-dependent initialisation of Salimans & Kingma, 2016),
and the synthesis kernel is scaled so that the first output is quieter than the notes: the loss
then pulls the output up rather than pushing every unit to zero. The architecture is unchanged.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from sing_synth.config import SingConfig
from sing_synth.model import Decoder, Encoder, squared_hann

OUTPUT_RATIO = 0.1  # first output RMS against the batch's RMS (-20 dB)


def _normalise(weight: torch.Tensor, bias: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
    """Rescale ``weight`` / set ``bias`` so that ``pre`` (.., channels) becomes zero mean, unit std per channel."""
    flat = pre.reshape(-1, pre.shape[-1])
    mean, std = flat.mean(0), flat.std(0).clamp_min(1e-8)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    weight.mul_(1.0 / std.view(shape))
    bias.copy_(-mean / std)
    return (pre - mean) / std


@torch.no_grad()
def data_init(encoder: Encoder, decoder: Decoder, padded: torch.Tensor, target: torch.Tensor) -> None:
    """Initialise ``encoder`` and ``decoder`` from one batch (``padded`` waveforms, ``target`` notes)."""
    c = encoder.config
    frames = padded.unfold(-1, c.kernel_size, c.stride)
    w = encoder.analysis.weight  # (C, 1, K)
    pre = F.linear(frames, w[:, 0, :] * encoder.window, None)
    x = F.relu(_normalise(w, encoder.analysis.bias, pre))
    for conv in encoder.rewrite:
        x = F.relu(_normalise(conv.weight, conv.bias, F.linear(x, conv.weight[..., 0], None)))
    out = encoder.output
    latent = _normalise(out.weight, out.bias, F.linear(x, out.weight[..., 0], None))

    x = latent.unfold(1, c.context_size, 1).flatten(2)
    w = decoder.context.weight
    x = F.relu(_normalise(w, decoder.context.bias, F.linear(x, w.flatten(1), None)))
    for conv in decoder.rewrite:
        x = F.relu(_normalise(conv.weight, conv.bias, F.linear(x, conv.weight[..., 0], None)))
    decoder.synthesis.bias.zero_()
    out = decoder(latent)[:, c.trim : c.trim + c.note_samples]
    scale = OUTPUT_RATIO * target.float().pow(2).mean().sqrt() / out.pow(2).mean().sqrt().clamp_min(1e-12)
    decoder.synthesis.weight.mul_(scale)


@torch.no_grad()
def revive(decoder: Decoder, latent: torch.Tensor, seed: int = 0) -> list[int]:
    """Give the decoder's dead ReLU channels new inputs, without changing its output.

    A channel whose pre-activation is negative for every frame of ``latent`` (a batch drawn from
    every group: drum kits and octave bands) gets no gradient and never fires again: a note whose
    frames meet only dead channels comes out as the synthesis bias, silence (experiment E16). Each
    such channel gets random incoming weights, centred and scaled on the batch as ``data_init``
    does (so it fires on about half the frames), and zero outgoing weights, so the output is
    unchanged; the outgoing weights then learn from their first step. Returns the channels
    revived per layer (context, rewrite 1, rewrite 2).
    """
    c = decoder.config
    gen = torch.Generator().manual_seed(seed)
    layers = [decoder.context, *decoder.rewrite]
    after = [*decoder.rewrite, decoder.synthesis]
    x = latent.unfold(1, c.context_size, 1).flatten(2)
    counts = []
    for layer, nxt in zip(layers, after):
        w = layer.weight.view(layer.weight.shape[0], -1)  # context: (C, D * K) in unfold's order
        pre = F.linear(x, w, layer.bias)
        dead = ~(pre > 0).flatten(0, -2).any(0)
        n = int(dead.sum())
        if n:
            fresh = torch.randn(n, w.shape[1], generator=gen, dtype=w.dtype) / w.shape[1] ** 0.5
            bias = torch.empty(n, dtype=w.dtype)
            pre[..., dead] = _normalise(fresh, bias, F.linear(x, fresh))
            w[dead], layer.bias[dead] = fresh, bias
            if nxt is decoder.synthesis:
                nxt.weight[dead] = 0.0  # (C, 1, kernel)
            else:
                nxt.weight[:, dead] = 0.0  # (C, C, 1)
        counts.append(n)
        x = F.relu(pre)
    return counts


GRAIN_KEYS = ("decoder.synthesis.weight", "analysis.weight")  # Sing's synthesis kernel, the encoder's analysis kernel


def grain_growth(old: SingConfig, new: SingConfig) -> int:
    """Samples added on each side of the grain if ``new`` differs from ``old`` only by a longer
    synthesis kernel with ``pad`` grown by half as much (0 if the configurations are equal)."""
    a, b = old.to_dict(), new.to_dict()
    side = (new.kernel_size - old.kernel_size) // 2
    if {k for k in a if a[k] != b[k]} - {"kernel_size", "pad"} or side < 0 or new.pad - old.pad != side:
        raise ValueError(
            "the model differs from the run it starts from in more than a longer grain: only kernel_size "
            f"may grow, with pad growing by half as much (here kernel_size {old.kernel_size} -> "
            f"{new.kernel_size}, pad {old.pad} -> {new.pad})"
        )
    return side


@torch.no_grad()
def widen_grain(state: dict, old: SingConfig, new: SingConfig) -> dict:
    """``state`` (a model's or an encoder's) with its kernels grown from ``old`` to ``new``'s length.

    The kernels are windowed by hann**2 of their own length: the old windowed grain is placed in
    the middle of the new one (divided by the new window there) and the rest is zero, so every
    grain, and so every output, is the same as before; with ``pad`` grown by half the added
    length, the frames stay where they were in the note (n_steps, the decoder's output length
    after its trim, and each grain's centre do not move). Training can then use the longer grain.
    """
    side = grain_growth(old, new)
    if not side:
        return state
    k = old.kernel_size
    ratio = (squared_hann(k) / squared_hann(new.kernel_size)[side : side + k]).to(torch.float64)
    out = dict(state)
    for key in GRAIN_KEYS:
        if key in state:
            w = state[key]
            grown = w.new_zeros(*w.shape[:-1], new.kernel_size)
            grown[..., side : side + k] = (w.double() * ratio).to(w.dtype)
            out[key] = grown
    return out
