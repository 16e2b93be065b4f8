"""The mixer's scratch buffers, made once for a pool size and a chunk, so a block allocates nothing."""

from __future__ import annotations

import numpy as np

from .blas import matmul
from .voices import VoicePool

MAX_CHUNK = 2048  # most frames rendered per pass (bounds the scratch matrices)


class Scratch:
    """Per-voice vectors, the term matrices, the rows x frames matrices and the envelope tables of
    a :class:`~sing_synth.mixer.Mixer` of ``pool`` rendering up to ``chunk`` frames per pass
    (about 60 bytes x voices x chunk). Rows: layer 0 of every voice, then layer 1."""

    def __init__(self, pool: VoicePool, chunk: int) -> None:
        n, c = pool.size, chunk
        self.k = np.arange(c, dtype=np.float64)  # 0 .. c-1
        # per-voice scratch
        self.speed, self.end, self.p0, self.d, self.f, self.f2, self.lv = (np.zeros(n) for _ in range(7))
        self.ti, self.ti2 = np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.mask, self.mask2, self.mask3, self.quiet = (np.zeros(n, bool) for _ in range(4))
        # Matrices that vary along both voices and frames are made by matrix products: ``c``
        # (terms x rows, transposed) times ``b`` (terms x frames), with b's rows k, 1, then one
        # (k - kink)+ per channel whose pitch bend changes inside the stretch. Rows: layer 0 of
        # every voice, then layer 1.
        self.c = np.zeros((2 + 16, 2 * n))
        self.b = np.zeros((2 + 16, c))
        self.b[0], self.b[1] = self.k, 1.0
        self.kinks = np.zeros(2 + 16)  # the kink of each bend term
        self.ce = np.zeros((2, n))  # terms x voices of affine
        self.dg = np.zeros((n, 4))  # gain still to move on a ramp
        self.gs, self.gt = np.zeros((n, 4)), np.zeros((n, 4))  # gains and sends side by side, and their targets
        self.g = np.zeros((4, 2 * n))  # mix (and send) coefficients of the rows
        self.g32 = np.zeros((4, 2 * n), np.float32)
        # the mix (left, right) and the sends (reverb, chorus), then a gain ramp's part of them
        self.bus = np.zeros((2, 4, c), np.float32)
        # rows x frames scratch (flat: a view of the first entries is contiguous)
        self.P = np.zeros(2 * n * c)  # playback positions (flat bank offsets)
        self.T = np.zeros(2 * n * c)  # float64 scratch
        self.I = np.zeros(2 * n * c, np.int64)  # flat bank indices
        self.F = np.zeros(2 * n * c, np.float32)  # interpolation fractions
        self.Y = np.zeros(2 * n * c, np.float32)  # voice signals
        self.H = np.zeros(2 * n * c, np.float32)
        self.W = np.zeros(n * c, np.float32)  # a start, end fade or envelope per voice
        if c <= MAX_CHUNK:  # (offline, longer chunks touch only the rows they use: leave the pages unmapped)
            for buf in (self.P, self.T, self.I, self.F, self.Y, self.H, self.W):
                buf.fill(0)  # touch every page now: a first write in the audio callback would page-fault
        # envelope tables by kind, each [1 x c, decay^(k+1) for k = 0 .. c-1]: a voice whose decay
        # starts at frame e reads entries c - e + k of its kind's row
        decays = np.exp(np.outer(pool.logs, self.k + 1.0))
        self.env = np.concatenate([np.ones((3, c)), decays], axis=1).astype(np.float32).reshape(-1)
        self.env_row = np.arange(3, dtype=np.int64) * 2 * c + c  # flat offset of each kind's decay

    def affine(self, out: np.ndarray, scale, offset: np.ndarray) -> None:
        """``out[v, k] = scale[v] x k + offset[v]`` (``scale`` may be a number) for the active voices,
        as a matrix product: NumPy's broadcasting would allocate its buffers in every call."""
        n = len(offset)
        ce = self.ce[:, :n]
        np.copyto(ce[0], scale)
        np.copyto(ce[1], offset)
        matmul(ce.T, self.b[:2, : out.shape[1]], out)
