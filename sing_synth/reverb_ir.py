"""The reverb bus offline: the reverb's impulse response, convolved with the send by FFT.

:class:`~sing_synth.reverb.Reverb` is linear and time-invariant in its input, and its settings
hold for the whole life of an engine, so its output is its input convolved with its impulse
response. :class:`ReverbIR` computes that response once, through ``Reverb`` itself (an impulse,
until it is further down than the ``tail`` after which the engine resets a reverb whose input is
silent), and convolves
the sends with it: a uniformly partitioned convolution. The response is cut into partitions of
``block`` frames; each block of input is transformed once (FFTs of ``2 x block``: a block
convolved with a partition never wraps around), its spectrum kept for as many blocks as there
are partitions, and each block of output is one inverse FFT per side of the sum of their
products. The work per frame no longer depends on the reverb's delays (the block engine runs
its combs in chunks of the shortest one), only on the number of partitions: a long room costs
more than the block engine, and :func:`pays` tells when the convolution is worth it.

It gives the block engine's samples to float rounding: FFTs in float32 against the combs' float32
recursions, and the response cut 170 dB down, where what is left of it adds less than 1e-8 of
the input's peak to an output sample. ``tests/test_reverb_ir.py`` holds it to the block engine within 1e-6.

Offline only: it allocates in every block, and the output of a block that arrives in pieces
(a render's last block, or one cut short by the event queue) is transformed again for each
piece (the input so far, zero after it: what is still to come changes none of the output
already given). The methods are ``Reverb``'s, for ``effects`` to run either.
"""

from __future__ import annotations

import numpy as np

from .reverb import TAIL_DB, Reverb

MAX_PARTITIONS = 8  # a response longer than this many blocks is left to the block engine (see ``pays``)
NEVER, FAR = -(1 << 62), 1 << 62  # frames before and after any other
RESPONSE_DB = 170.0  # the response is cut this far down (the engine resets a silent reverb at TAIL_DB)


def response_length(rate: int, room_size: float) -> int:
    """Frames of the response kept: RESPONSE_DB down, as ``Reverb.tail`` is TAIL_DB down (what is
    cut adds less than 1e-8 of the input's peak to any output sample at the highest level)."""
    return int(Reverb(rate, room_size, 0.0, 0.0, 1).tail * RESPONSE_DB / TAIL_DB)


def impulse_response(rate: int, room_size: float, damping: float, level: float) -> np.ndarray:
    """The reverb's response to a unit impulse, ``(2, frames)`` float32 (left, right), cut at
    ``response_length``."""
    n = response_length(rate, room_size)
    reverb = Reverb(rate, room_size, damping, level, min(n, 1 << 16))
    x = np.zeros((1, n), np.float32)
    x[0, 0] = 1.0
    out = np.zeros((1, 2, n), np.float32)
    reverb.process(x, out)
    return out[0]


def pays(rate: int, room_size: float, max_block: int) -> bool:
    """Whether the convolution is cheaper than the block engine: a response of at most
    ``MAX_PARTITIONS`` blocks (the cost of a partition is a product per block, the block engine's
    a fixed number of NumPy calls per comb chunk)."""
    return -(-response_length(rate, room_size) // max(1, int(max_block))) <= MAX_PARTITIONS


class ReverbIR:
    """The reverb of ``lanes`` mono inputs as a convolution with its impulse response (see the
    module docstring); ``process`` adds it to ``out`` as ``Reverb.process`` does."""

    def __init__(
        self, rate: int, room_size: float, damping: float, level: float, max_block: int, lanes: int = 1
    ) -> None:
        self.lanes = lanes
        self.block = b = max(1, int(max_block))
        self.size = n = 2 * b
        self.tail = Reverb(rate, room_size, damping, level, 1).tail  # when ``effects`` resets it, as the block engine
        h = impulse_response(rate, room_size, damping, level)
        self.partitions = p = -(-h.shape[1] // b)
        cut = np.zeros((2, p * b), np.float32)
        cut[:, : h.shape[1]] = h
        # (partitions, sides, bins): the spectrum of each partition of the response
        self._h = np.stack([np.fft.rfft(cut[:, k * b : (k + 1) * b], n=n, axis=-1) for k in range(p)])
        bins = self._h.shape[-1]
        self._spectra = np.zeros((p, lanes, bins), np.complex64)  # block m's input at m % p
        self._past = np.zeros((lanes, 2, bins), np.complex64)  # this block's output from the blocks before
        self._s = np.zeros((lanes, bins), np.complex64)  # this block's input so far
        self._product = np.zeros((lanes, 2, bins), np.complex64)
        self._z = np.zeros((lanes, 2, n), np.float32)
        self._carry = np.zeros((lanes, 2, b), np.float32)  # this block's output from the last block's overflow
        self._x = np.zeros((lanes, n), np.float32)  # this block's input so far, zero after it
        self._pos = 0  # frames into the block
        self._m = 0  # blocks so far
        # where the response is exactly zero, so is the output (an FFT's rounding spreads over its
        # whole block): a lane is silent until its first input after a silence longer than the
        # response, plus the response's own silent start
        self._length = h.shape[1]
        self._delay = int(np.flatnonzero(np.any(h != 0.0, axis=0))[0])
        self._frame = 0  # frames so far
        self._last = [NEVER] * lanes  # a lane's last frame of input
        self._live = [FAR] * lanes  # the frame from which a lane's output may be non-zero

    def reset(self) -> None:
        self._spectra.fill(0.0)
        self._past.fill(0.0)
        self._carry.fill(0.0)
        self._x.fill(0.0)
        self._last = [NEVER] * self.lanes
        self._live = [FAR] * self.lanes

    def idle(self, n: int) -> None:
        """``n`` frames pass unprocessed (silent input, silent state): the blocks stay in step."""
        self._pos = (self._pos + n) % self.block
        self._frame += n

    def process(self, x: np.ndarray, out: np.ndarray) -> None:
        """Add the reverb of ``x`` (lanes, n) to ``out`` (lanes, 2, n)."""
        a, n = 0, x.shape[1]
        while a < n:
            k = min(self.block - self._pos, n - a)
            self._piece(x[:, a : a + k], out[:, :, a : a + k], k)
            a += k

    def _piece(self, x: np.ndarray, out: np.ndarray, k: int) -> None:
        """``k`` frames of the current block (at most up to its end)."""
        b, p, pos = self.block, self.partitions, self._pos
        past, product, s, z = self._past, self._product, self._s, self._z
        if pos == 0:  # a new block: the output the blocks before it give it, partitions 1 to p - 1
            past.fill(0.0)
            for j in range(1, p):
                np.multiply(self._spectra[(self._m - j) % p][:, None, :], self._h[j], out=product)
                past += product
        self._x[:, pos : pos + k] = x
        # "ortho" both ways: the same product as the default scaling, and NumPy's float32 FFTs stay
        # in float32 (a forward "backward" one or an inverse "forward" one is computed in float64)
        for lane in range(self.lanes):  # one lane at a time: NumPy's 2-D rfft is slower
            np.fft.rfft(self._x[lane], norm="ortho", out=s[lane])
        np.multiply(s[:, None, :], self._h[0], out=product)
        product += past
        np.fft.irfft(product, n=self.size, axis=-1, norm="ortho", out=z)
        z[:, :, pos : pos + k] += self._carry[:, :, pos : pos + k]
        frame = self._frame
        for lane in range(self.lanes):
            if x[lane, k - 1] != 0.0 and frame + k - 1 - self._last[lane] < self._length:
                self._last[lane] = frame + k - 1  # sounding on (the usual case: no search)
            else:
                heard = np.flatnonzero(x[lane])
                if len(heard):
                    first = frame + int(heard[0])
                    if first - self._last[lane] >= self._length:  # after a silence longer than the response
                        self._live[lane] = first + self._delay
                    self._last[lane] = frame + int(heard[-1])
            cut = min(max(self._live[lane] - frame, 0), k)
            out[lane, :, cut:] += z[lane, :, pos + cut : pos + k]
        self._frame = frame + k
        self._pos = pos + k
        if self._pos == b:  # the block is whole: its spectrum and its overflow into the next
            np.copyto(self._spectra[self._m % p], s)
            np.copyto(self._carry, z[:, :, b:])
            self._x[:, :b] = 0.0
            self._m += 1
            self._pos = 0
