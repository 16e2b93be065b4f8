"""Read a live session's timing records (``SING_SYNTH_TIMING``, see ``sing_synth/timing.py``) after a
soak and print where the time went: how late the audio callback started and how long it ran, and
each other Python thread's spans (each holds the GIL for its length, less its time in C without
it), overall and in the seconds around the xruns that fell outside machine stalls."""

from __future__ import annotations

import numpy as np

THREADS = ("midi", "renderer", "status", "gc")


def load(path) -> dict:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _ms(x: np.ndarray) -> str:
    if len(x) == 0:
        return "-"
    return f"{1000 * np.median(x):.3f} / {1000 * np.percentile(x, 99):.3f} / {1000 * x.max():.2f}"


def summary(rec: dict, period: float, windows=()) -> list[str]:
    """Lines of the breakdown; ``windows``: (t0, t1) perf_counter spans of the xruns of our own."""
    late, cost, start = rec["block_late"], rec["block_cost"], rec["block_start"]
    span = start[-1] - start[0] if len(start) > 1 else 1.0
    over = late + cost > period
    lines = [
        f"  per-thread timing over {span:.0f} s ({len(start)} blocks; ms: median / p99 / max)",
        f"    {'audio callback start lateness':34} {_ms(late)}   blocks late + cost > period: {int(over.sum())}",
        f"    {'audio callback run time':34} {_ms(cost)}   total {cost.sum():.1f} s ({cost.sum() / span:.1%})",
    ]
    if "block_cpu" in rec:
        wait = cost - rec["block_cpu"]
        lines.append(
            f"    {'  of which waiting (GIL or core)':34} {_ms(wait)}   blocks waiting > 1 ms: {int((wait > 0.001).sum())}"
        )
    for name in THREADS:
        s, n = rec[f"{name}_start"], rec[f"{name}_length"]
        if len(n) == 0:
            lines.append(f"    {name + ' spans':34} none")
            continue
        lines.append(
            f"    {name + ' spans':34} {_ms(n)}   {len(n)} spans, {len(n) / span:.1f}/s, total {n.sum():.2f} s, "
            f"> 1 ms: {int((n > 0.001).sum())}"
        )
    for t0, t1 in windows:
        sel = (start >= t0) & (start <= t1)
        if not sel.any():
            continue
        i = np.flatnonzero(sel)[np.argmax((late + cost)[sel])]
        who = []
        for name in THREADS:
            s, n = rec[f"{name}_start"], rec[f"{name}_length"]
            hit = (s < start[i] + cost[i]) & (s + n > start[i] - late[i])
            if hit.any():
                who.append(f"{name} {1000 * n[hit].max():.2f} ms")
        cpu = f" ({1000 * rec['block_cpu'][i]:.2f} ms CPU)" if "block_cpu" in rec else ""
        lines.append(
            f"    xrun window: worst block late {1000 * late[i]:.2f} ms + ran {1000 * cost[i]:.2f} ms{cpu} "
            f"(period {1000 * period:.2f}); threads of ours running meanwhile: {', '.join(who) or 'none of ours'}"
        )
    return lines
