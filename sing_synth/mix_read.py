"""Reading the note bank at the voices' playback positions: interpolation, whole-sample slices,
loop jumps and the fade over a note's last samples (the mixer's gathers, on its scratch)."""

from __future__ import annotations

import numpy as np

from .mix_scratch import Scratch
from .voices import VoicePool

ROUND = 2.0**52  # adding it rounds a float64 below 2^51 to an integer, held in the low bits
ROUND_BITS = int(np.float64(ROUND).view(np.int64))


def exact(s: Scratch, speed: np.ndarray, pos: np.ndarray) -> bool:
    """Every voice steps whole samples from a whole-sample position (no bend, no re-pitch)."""
    mask, f = s.mask2[: len(speed)], s.f2[: len(speed)]
    np.equal(speed, 1.0, out=mask)
    if not mask.all():
        return False
    np.floor(pos, out=f)
    np.equal(f, pos, out=mask)
    return bool(mask.all())


def whole_steps(s: Scratch, speed: np.ndarray, p0: np.ndarray, terms: int, wraps) -> np.ndarray:
    """Voices stepping whole samples from a whole-sample position through the stretch: no
    re-pitch or bend, no bend change, no loop jump (a mask over the active voices)."""
    n = len(speed)
    whole, other, f = s.mask2[:n], s.mask3[:n], s.f2[:n]
    np.equal(speed, 1.0, out=whole)
    np.floor(p0, out=f)
    np.equal(f, p0, out=other)
    whole &= other
    for q in range(2, terms):  # a bend changing inside the stretch on the voice's channel
        np.equal(s.c[q, :n], 0.0, out=other)
        whole &= other
    for v in wraps:
        whole[v] = False
    return whole


def slices(s: Scratch, pool: VoicePool, flat, y, p, whole, n: int, m: int, terms: int, wraps, p0) -> None:
    """The voices' samples for a long stretch: each row of a ``whole`` voice is one slice copy
    of the bank; the others (bent, re-pitched or looping voices: usually few) have their
    positions computed and interpolated row by row."""
    c, b = s.c, s.b
    size = len(flat)
    starts, slots = c[1, : 2 * n].tolist(), pool.slot[:n].T.ravel().tolist()
    wrapping = set(wraps)
    for v in range(n):
        if whole[v]:
            for row in (v, n + v):
                if slots[row] == 0:  # an unused layer: its weight is 0 (the row's old, finite samples stay)
                    continue
                o = int(starts[row])
                lo, hi = max(o, 0), min(o + m, size)  # before a note's start or past its end: masked below
                if lo > o or hi < o + m:
                    y[row] = 0.0
                y[row, lo - o : hi - o] = flat[lo:hi]
            continue
        for row in (v, n + v):
            np.matmul(c[:terms, row], b[:terms, :m], out=p[row])
        if v in wrapping:
            wrap(pool, p, v, n, c[1, v] - p0[v])
        for row in (v, n + v):
            if slots[row]:
                read(s, flat, p[row : row + 1], y[row : row + 1], 1, m)


def wrap(pool: VoicePool, p: np.ndarray, v: int, n: int, base: float) -> None:
    """Positions of a looping voice (rows v and n + v; its layer 0 note at flat offset ``base``)
    past its loop end jump back by the loop length."""
    row = p[v]
    end = pool.loop_end[v] + base
    length = pool.loop_len[v]
    s = 0
    while row[-1] >= end:
        s += int(np.searchsorted(row[s:], end))
        row[s:] -= length
        p[n + v, s:] -= length


def end_fade(s: Scratch, pool: VoicePool, y: np.ndarray, p: np.ndarray, v: int, n: int, m: int, base: float,
             sliced: bool) -> None:
    """Fade out the last end_fade samples of voice ``v`` (rows v and n + v; its layer 0 note at
    flat offset ``base``): w = (last - position) / end_fade, clipped to [0, 1]."""
    w, t = s.W[:m], s.T[:m]
    if sliced:  # whole-sample steps, no position matrix
        np.add(s.k[:m], s.c[1, v], out=t)
    else:
        np.copyto(t, p[v])
    np.subtract(pool.last[v] + base, t, out=t)
    t *= 1.0 / pool.end_fade
    np.clip(t, 0.0, 1.0, out=t)
    np.copyto(w, t)
    y[v] *= w
    y[n + v] *= w


def read(s: Scratch, flat: np.ndarray, p: np.ndarray, y: np.ndarray, rows: int, m: int) -> None:
    """``y`` = the bank at the flat fractional positions ``p``, linearly interpolated."""
    t = s.T[: rows * m].reshape(rows, m)
    i = s.I[: rows * m].reshape(rows, m)
    frac = s.F[: rows * m].reshape(rows, m)
    hi = s.H[: rows * m].reshape(rows, m)
    # i = floor(p) (or p - 1 at whole p: then frac = 1) by rounding p - 0.5 to an integer float
    # whose low bits are the integer (faster than a float to int conversion)
    np.add(p, ROUND - 0.5, out=t)
    np.subtract(t.view(np.int64), ROUND_BITS, out=i)
    t -= ROUND
    np.subtract(p, t, out=t)
    np.copyto(frac, t)
    np.take(flat, i, out=y, mode="clip")  # out-of-note indices are masked; "raise" would buffer
    i += 1
    np.take(flat, i, out=hi, mode="clip")
    hi -= y
    hi *= frac
    y += hi

