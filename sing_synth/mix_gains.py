"""The voices' gains and effect sends into the stereo mix and the stems: matrix products of
their signals, with linear gain ramps (the mixer's products, on its scratch)."""

from __future__ import annotations

import numpy as np

from .blas import matmul
from .mix_scratch import Scratch
from .voices import VoicePool


def coefficients(s: Scratch, pool: VoicePool, n: int, gains: np.ndarray) -> np.ndarray:
    """The (k, rows) coefficients of the rows: layer weight x level x ``gains`` (voices, k: left and
    right, or the reverb and chorus sends, or both side by side)."""
    rows, f, k = 2 * n, s.f[:n], gains.shape[1]
    g, g32 = s.g[:k, :rows], s.g32[:k, :rows]
    for layer in (0, 1):
        np.multiply(pool.weight[:n, layer], pool.level[:n], out=f)
        for side in range(k):
            np.multiply(f, gains[:, side], out=g[side, layer * n : (layer + 1) * n])
    np.copyto(g32, g)
    return g32


def mix(s: Scratch, pool: VoicePool, y: np.ndarray, out: np.ndarray, sends: np.ndarray | None) -> None:
    """Add the voices' signals ``y`` (rows, m) at their gains to ``out`` (left, right) and, with
    ``sends``, at their send gains to ``sends`` (reverb, chorus), advancing the ramps. Where the
    sends ramp exactly as the gains do (none ramping, or an expression or volume change moving
    both), one (4, rows) product makes both (each row the same sums as alone), else one each."""
    n, m = len(y) // 2, y.shape[1]
    if pool.ramps:
        pool.ramps = np.count_nonzero(pool.ramp_left[:n]) > 0
    if sends is not None and pool.send_ramps:
        pool.send_ramps = np.count_nonzero(pool.send_ramp[:n]) > 0
    if sends is not None and _together(s, pool, n):
        both = s.bus[0, :, :m]
        gains, targets = s.gs[:n], s.gt[:n]
        np.copyto(targets[:, :2], pool.target[:n])
        np.copyto(targets[:, 2:], pool.send_target[:n])
        if pool.ramps:
            np.copyto(gains[:, :2], pool.gain[:n])
            np.copyto(gains[:, 2:], pool.send[:n])
            mix_ramped(s, pool, y, both, s.bus[1], pool.ramp_left[:n], pool.ramp_at[:n], gains, targets, advance=False)
            advance_ramps(s, m, pool.ramp_left[:n], pool.ramp_at[:n], pool.gain[:n], pool.target[:n])
            advance_ramps(s, m, pool.send_ramp[:n], pool.send_at[:n], pool.send[:n], pool.send_target[:n])
        else:
            matmul(coefficients(s, pool, n, targets), y, both)
        out += both[:2]
        sends += both[2:]
        return
    buses = [(out, pool.ramps, pool.ramp_left, pool.ramp_at, pool.gain, pool.target)]
    if sends is not None:
        buses.append((sends, pool.send_ramps, pool.send_ramp, pool.send_at, pool.send, pool.send_target))
    for bus, ramps, ramp, at, gain, target in buses:
        part = s.bus[0, :2, :m]
        if ramps:
            mix_ramped(s, pool, y, part, s.bus[1, :2], ramp[:n], at[:n], gain[:n], target[:n])
        else:
            matmul(coefficients(s, pool, n, target[:n]), y, part)
        bus += part


def _together(s: Scratch, pool: VoicePool, n: int) -> bool:
    """Whether the sends ramp exactly as the gains (the same steps left, from the same frame)."""
    if not (pool.ramps or pool.send_ramps):
        return True
    if pool.ramps != pool.send_ramps:
        return False
    same, other = s.mask2[:n], s.mask3[:n]
    np.equal(pool.ramp_left[:n], pool.send_ramp[:n], out=same)
    if not same.all():
        return False
    np.equal(pool.ramp_at[:n], pool.send_at[:n], out=same)
    np.equal(pool.ramp_left[:n], 0, out=other)  # (where none ramps, its frame does not matter)
    same |= other
    return bool(same.all())


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
               target, advance: bool = True) -> None:
    """The mix of a stretch (``out``: a row per column of ``gain``) where gains move linearly
    towards their targets over ``ramp`` samples from frame ``at`` (the voices' ``ramp_left``,
    ``ramp_at``, ``gain``, ``target``, or the same of their sends, or both side by side): before
    the first ramp starts, the mix at the gains; after the last one ends, at the targets; in
    between, at the gains plus (target - gain) x clip((k + 1 - at) / steps, 0, 1) x signal (a
    second matrix product over those frames only, into ``scratch``). Then, with ``advance``,
    advance the gains."""
    n, m, sides = len(gain), out.shape[1], gain.shape[1]
    rows = 2 * n
    dg = s.dg[:n, :sides]
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
        for row, extra in zip(out, more):  # row by row: a 2-D strided sum of 4 rows would buffer
            row[k0:k1] += extra
    if advance:
        advance_ramps(s, m, ramp, at, gain, target)


def advance_ramps(s: Scratch, m: int, ramp, at, gain, target) -> None:
    """Move the gains ``m`` frames along their ramps; finished ramps land exactly on their targets."""
    n, sides = len(gain), gain.shape[1]
    dg, steps, f, ti, mask = s.dg[:n, :sides], s.d[:n], s.f2[:n], s.ti[:n], s.mask2[:n]
    np.maximum(ramp, 1, out=ti)
    np.copyto(steps, ti)
    np.subtract(m, at, out=ti)
    np.clip(ti, 0, ramp, out=ti)
    ramp -= ti
    np.subtract(at, m, out=at)
    np.maximum(at, 0, out=at)
    np.copyto(f, ti)
    f /= steps
    np.subtract(target, gain, out=dg)
    for side in range(sides):
        dg[:, side] *= f
        gain[:, side] += dg[:, side]
    np.equal(ramp, 0, out=mask)
    np.copyto(gain, target, where=mask[:, None])
