"""The voices' gains and effect sends into the stereo mix and the stems: matrix products of
their signals, with linear gain ramps (the mixer's products, on its scratch)."""

from __future__ import annotations

import numpy as np

from .blas import matmul
from .mix_scratch import Scratch
from .voices import VoicePool


def coefficients(s: Scratch, pool: VoicePool, n: int, gains: np.ndarray) -> np.ndarray:
    """The (2, rows) stereo coefficients of the rows: layer weight x level x ``gains`` (voices, 2)."""
    rows, f = 2 * n, s.f[:n]
    g, g32 = s.g[:, :rows], s.g32[:, :rows]
    for layer in (0, 1):
        np.multiply(pool.weight[:n, layer], pool.level[:n], out=f)
        for side in (0, 1):
            np.multiply(f, gains[:, side], out=g[side, layer * n : (layer + 1) * n])
    np.copyto(g32, g)
    return g32


def stem_mix(s: Scratch, pool: VoicePool, lane_of: np.ndarray, stems: np.ndarray, stem_sends: np.ndarray | None,
             y: np.ndarray, n: int, m: int, a: int) -> None:
    """Each lane's share of the mix and of the sends, into ``stems`` and ``stem_sends``: for each
    lane, the products of ``Mixer._render`` and ``mix_ramped`` over its own voices' rows (gathered), so the
    lanes together cost about what the mix does. The gains are not advanced (the mix that
    follows does it)."""
    lane = lane_of[pool.channel[:n]]
    groups = [(int(k), np.flatnonzero(lane == k)) for k in np.unique(lane) if k >= 0]
    buses = [(stems, pool.ramp_left, pool.ramp_at, pool.gain, pool.target)]
    if stem_sends is not None:
        buses.append((stem_sends, pool.send_ramp, pool.send_at, pool.send, pool.send_target))
    for bus, ramp, at, gain, target in buses:
        ramp, at, gain, target = ramp[:n], at[:n], gain[:n], target[:n]
        at_target = coefficients(s, pool, n, target).copy()
        ramping = bool(ramp.any())
        if ramping:  # as mix_ramped: the gains until k1, the targets after, a ramp from k0 to k1
            live = ramp > 0
            steps = np.maximum(ramp, 1)
            k0, k1 = min(m, int(at[live].min())), min(m, int((at + steps)[live].max()))
            at_gain = coefficients(s, pool, n, gain).copy()
            change = coefficients(s, pool, n, target - gain).copy()
            k = np.arange(k0, k1, dtype=np.float64)
            w = np.clip((k[None, :] + 1.0 - at[:, None]) / steps[:, None], 0.0, 1.0).astype(np.float32)
        for index, voices in groups:
            rows = np.concatenate([voices, n + voices])
            yl = y[rows]
            if not ramping:
                bus[index, :, a : a + m] += at_target[:, rows] @ yl
                continue
            out = np.empty((2, m), np.float32)
            out[:, :k1] = at_gain[:, rows] @ yl[:, :k1]
            out[:, k1:] = at_target[:, rows] @ yl[:, k1:]
            if k1 > k0:
                ww = w[voices]
                out[:, k0:k1] += change[:, rows] @ (yl[:, k0:k1] * np.concatenate([ww, ww]))
            bus[index, :, a : a + m] += out


def mix_ramped(s: Scratch, pool: VoicePool, y: np.ndarray, out: np.ndarray, scratch: np.ndarray, ramp, at, gain,
               target) -> None:
    """The stereo mix of a stretch where gains move linearly towards their targets over ``ramp``
    samples from frame ``at`` (the voices' ``ramp_left``, ``ramp_at``, ``gain``, ``target``, or
    the same of their sends): before the first ramp starts, the mix at the gains; after the
    last one ends, at the targets; in between, at the gains plus (target - gain) x clip((k + 1 -
    at) / steps, 0, 1) x signal (a second matrix product over those frames only, into
    ``scratch``). Then advance the gains."""
    n, m = len(gain), out.shape[1]
    rows = 2 * n
    dg = s.dg[:n]
    steps, f, ti, f1 = s.d[:n], s.f2[:n], s.ti[:n], s.f[:n]
    mask = s.mask2[:n]
    np.greater(ramp, 0, out=mask)
    np.maximum(ramp, 1, out=ti)
    np.copyto(steps, ti)
    ti += at
    k0 = min(m, int(at[mask].min()))  # the first ramp starts here
    k1 = min(m, int(ti[mask].max()))  # from here on, every ramp has arrived
    coef = coefficients(s, pool, n, gain)
    matmul(coef, y[:, :k1], out[:, :k1])
    if k1 < m:
        matmul(coefficients(s, pool, n, target), y[:, k1:], out[:, k1:])
    k = k1 - k0
    if k > 0:
        np.divide(1.0, steps, out=f)
        np.subtract(k0 + 1.0, at, out=f1)
        f1 *= f
        t, w = s.T[: n * k].reshape(n, k), s.W[: n * k].reshape(n, k)
        s.affine(t, f, f1)  # (k0 + j + 1 - at) / steps
        np.clip(t, 0.0, 1.0, out=t)
        np.copyto(w, t)
        z = s.H[: rows * k].reshape(rows, k)
        np.copyto(z, y[:, k0:k1])  # (a ufunc reading strided rows would allocate its buffers; a copy does not)
        z[:n] *= w
        z[n:rows] *= w
        np.subtract(target, gain, out=dg)
        more = scratch[:, :k]
        matmul(coefficients(s, pool, n, dg), z, more)
        out[:, k0:k1] += more
    # advance by the steps made in this stretch; finished ramps land exactly on their targets
    np.subtract(m, at, out=ti)
    np.clip(ti, 0, ramp, out=ti)
    ramp -= ti
    np.subtract(at, m, out=at)
    np.maximum(at, 0, out=at)
    np.copyto(f, ti)
    f /= steps
    np.subtract(target, gain, out=dg)
    for side in (0, 1):
        dg[:, side] *= f
        gain[:, side] += dg[:, side]
    np.equal(ramp, 0, out=mask)
    np.copyto(gain, target, where=mask[:, None])
