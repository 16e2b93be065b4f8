"""Read a live session's timing records (``SING_SYNTH_TIMING``, see ``sing_synth/timing.py``) after a
soak and print where the time went: how late the audio callback started and how long it ran, and
each other Python thread's spans (each holds the GIL for its length, less its time in C without
it), overall and in the seconds around the xruns that fell outside machine stalls."""

from __future__ import annotations

import math

import numpy as np

THREADS = ("midi", "renderer", "status", "gc")


def load(path) -> dict:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _ms(x: np.ndarray) -> str:
    if len(x) == 0:
        return "-"
    return f"{1000 * np.median(x):.3f} / {1000 * np.percentile(x, 99):.3f} / {1000 * x.max():.2f}"


def entry_delay(rec: dict, reach: int = 8) -> np.ndarray | None:
    """Per block, seconds from PortAudio's callback beginning (its ``currentTime``, JACK's frame time
    then) to ours beginning, above the usual; None where the records lack PortAudio's times. The two
    clocks are not one: the server's frames drift against ``perf_counter`` and jump where it skips
    cycles, so the usual offset is taken from the block's neighbours: the least offset among the
    ``reach`` blocks before it (itself included), and among the ``reach`` after it, the larger of the
    two (a step in the offset is no delay; a single late block, or a few, is)."""
    pa = rec.get("block_pa")
    if pa is None or len(pa) <= 2 * reach or not pa.any():
        return None
    offset = rec["block_start"] - pa
    padded = np.concatenate([np.full(reach, offset[0]), offset, np.full(reach, offset[-1])])
    windows = np.lib.stride_tricks.sliding_window_view(padded, reach + 1).min(axis=1)
    before, after = windows[: len(offset)], windows[reach:]
    return offset - np.maximum(before, after)


def first_note(rec: dict) -> list[str]:
    """The first note after start-up (issue 17): the first block with a MIDI message (drained, and its
    note applied in the same block) and the first with a voice sounding, each with its run time, CPU
    time and page faults (minor/major) in the callback; to compare, the next 1,000 blocks with MIDI
    messages, and the page faults of every block after the first note."""
    if "block_faults" not in rec:
        return []
    cost, cpu, faults = rec["block_cost"], rec["block_cpu"], rec["block_faults"]

    def block(i: int) -> str:
        return (
            f"block {i}: ran {1000 * cost[i]:.3f} ms ({1000 * cpu[i]:.3f} CPU), page faults "
            f"{int(faults[i, 0])}/{int(faults[i, 1])}"
        )

    midi, voices = np.flatnonzero(rec["block_midi"] > 0), np.flatnonzero(rec["block_voices"] > 0)
    lines = []
    if len(midi):
        lines.append(f"    {'first MIDI message (drained)':34} {block(int(midi[0]))}")
        later = midi[1:1001]
        if len(later):
            lines.append(
                f"    {'  the next blocks with MIDI':34} {len(later)}: ran {_ms(cost[later])} ms; page faults "
                f"{int(faults[later, 0].sum())}/{int(faults[later, 1].sum())} in {int((faults[later].sum(axis=1) > 0).sum())} blocks"
            )
    if len(voices):
        first = int(voices[0])
        after = faults[first + 1 :]
        lines.append(f"    {'first note (a voice sounding)':34} {block(first)}")
        lines.append(
            f"    {'  every block after it':34} {len(after)}: page faults {int(after[:, 0].sum())}/{int(after[:, 1].sum())} "
            f"in {int((after.sum(axis=1) > 0).sum())} blocks"
        )
    return lines


def summary(rec: dict, period: float, windows=(), context: dict | None = None) -> list[str]:
    """Lines of the breakdown; ``windows``: (t0, t1) perf_counter spans of the xruns of our own;
    ``context``: the soak's ``soak.npz`` (the reference's late wake-ups, steal time per second)."""
    late, cost, start = rec["block_late"], rec["block_cost"], rec["block_start"]
    span = start[-1] - start[0] if len(start) > 1 else 1.0
    over = late + cost > period
    # a pause: no callback for more than 1.5 periods. Lateness cannot show it (the audio clock takes a
    # block more than a period late as its new anchor), the time between two callbacks' starts does
    gaps = np.diff(start) if len(start) > 1 else np.zeros(0)
    paused = gaps > 1.5 * period
    lines = [
        f"  per-thread timing over {span:.0f} s ({len(start)} blocks; ms: median / p99 / max)",
        f"    {'audio callback start lateness':34} {_ms(late)}   blocks late + cost > period: {int(over.sum())}",
        f"    {'pauses (no callback > 1.5 periods)':34} {int(paused.sum())}, of which after a callback that ran past "
        f"its period: {int((paused & (late[:-1] + cost[:-1] > period)).sum())}"
        + (f"; longest {1000 * gaps.max():.1f} ms" if len(gaps) else ""),
        f"    {'audio callback run time':34} {_ms(cost)}   total {cost.sum():.1f} s ({cost.sum() / span:.1%})",
    ]
    entry = entry_delay(rec)
    if entry is not None:
        lines.append(
            f"    {'  from PortAudio to our callback':34} {_ms(entry)}   blocks > 1 ms: {int((entry > 0.001).sum())} "
            "(PortAudio's callback began -> ours began: the interpreter lock, sounddevice's wrapper)"
        )
    if "block_cpu" in rec:
        wait = cost - rec["block_cpu"]
        lines.append(
            f"    {'  of which waiting (GIL or core)':34} {_ms(wait)}   blocks waiting > 1 ms: {int((wait > 0.001).sum())}"
        )
    if "block_switches" in rec:
        sw, faults = rec["block_switches"], rec["block_faults"]
        lines.append(
            f"    {'  inside the callback':34} blocks with a voluntary context switch (a wait for the GIL or a "
            f"lock): {int((sw[:, 0] > 0).sum())}, preempted: {int((sw[:, 1] > 0).sum())}; page faults "
            f"{int(faults[:, 0].sum())} minor, {int(faults[:, 1].sum())} major"
        )
        lines.append(
            f"    {'  blocks':34} voices max {int(rec['block_voices'].max(initial=0))}, MIDI messages "
            f"{int(rec['block_midi'].sum())} (max {int(rec['block_midi'].max(initial=0))} a block), "
            f"PortAudio's xrun flag {int(rec['block_xrun'].sum())}"
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
        # how close to the next block each span ended: a span running past a block's due time (its start
        # less its lateness: a block kept waiting for the GIL starts after the span) held the GIL then
        if len(start) > 1:
            due = start - late
            nxt = np.searchsorted(due, s)
            ok = nxt < len(start)
            margin = due[nxt[ok]] - (s[ok] + n[ok])
            lines.append(
                f"    {'  ran past a block due':34} {int((margin < 0).sum())} of {int(ok.sum())} spans; margin to the "
                f"next block {_ms(margin)}"
            )
    lines += first_note(rec)
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
        # the longest time without a callback in the window (from the block before it), and how the
        # callback before that pause ended: within its period, the pause was the server's or the machine's
        j = np.flatnonzero(sel)
        j = j[j > 0]
        if len(j):
            g = j[np.argmax(start[j] - start[j - 1])]
            before_end = late[g - 1] + cost[g - 1]
            after = f"; PortAudio -> ours for the block after it {1000 * entry[g]:.2f} ms" if entry is not None else ""
            lines.append(
                f"    xrun window: longest time without a callback {1000 * (start[g] - start[g - 1]):.2f} ms "
                f"({(start[g] - start[g - 1]) / period:.1f} periods), after a callback that ended "
                f"{1000 * before_end:.2f} ms into its period ({1000 * late[g - 1]:.2f} late + "
                f"{1000 * cost[g - 1]:.2f} run){after}"
            )
            if entry is not None:
                k = np.flatnonzero(sel)
                m = k[np.argmax(entry[k])]
                lines.append(
                    f"      PortAudio -> ours in the window: most {1000 * entry[m]:.2f} ms, block "
                    f"{int(m - g):+d} from the pause"
                )
        lines.append(
            f"    xrun window: worst block late {1000 * late[i]:.2f} ms + ran {1000 * cost[i]:.2f} ms{cpu} "
            f"(period {1000 * period:.2f}); threads of ours running meanwhile: {', '.join(who) or 'none of ours'}"
        )
        if "block_switches" in rec:
            sw, faults = rec["block_switches"][i], rec["block_faults"][i]
            flagged = np.flatnonzero(sel & rec["block_xrun"])
            lines.append(
                f"      that block: context switches {int(sw[0])} voluntary, {int(sw[1])} involuntary; page faults "
                f"{int(faults[0])}/{int(faults[1])}; voices {int(rec['block_voices'][i])}, MIDI "
                f"{int(rec['block_midi'][i])}; PortAudio flagged {len(flagged)} blocks in the window"
            )
        if context is not None:
            wake = context["wakeups"]
            near = wake[(wake[:, 0] >= t0) & (wake[:, 0] <= t1)] if len(wake) else wake
            st = context["steal"]
            stolen = np.diff(st[:, 1])[(st[1:, 0] >= t0) & (st[:, 0][:-1] <= t1)] if len(st) > 1 else np.zeros(0)
            lines.append(
                f"      the machine: reference wake-ups >= 1 ms late: {len(near)}"
                f"{f' (worst {1000 * near[:, 1].max():.2f} ms)' if len(near) else ''}; steal "
                f"{1000 * stolen.sum():.0f} ms"
            )
    return lines


def _holds(times: np.ndarray, t0: float, t1: float) -> bool:
    """Whether the sorted ``times`` hold one in [t0, t1]."""
    k = np.searchsorted(times, t0)
    return bool(k < len(times) and times[k] <= t1)


def coincidence(context: dict, windows, lags=(0.001, 0.0015, 0.002)) -> list[str]:
    """Whether the xruns counted as ours still fall where the machine stalled, by less than the stall
    threshold: for each lag, how many of their ``windows`` hold a reference wake-up at least that
    late, against the share of all such windows of the run that do (a 1.5 s window every 50 ms), and
    the chance of that many or more by coincidence (binomial)."""
    wake = context["wakeups"]
    if not len(windows) or not len(wake):
        return []
    span = context["xrun_seconds"][:, 0] if len(context["xrun_seconds"]) else wake[:, 0]
    grid = np.arange(min(wake[0, 0], span.min()) + 1.5, max(wake[-1, 0], span.max()), 0.05)
    lines = [f"  the {len(windows)} windows of xruns outside the stalls, against the machine's smaller stalls:"]
    for lag in lags:
        times = np.sort(wake[wake[:, 1] >= lag, 0])
        share = float(np.mean([_holds(times, t - 1.5, t) for t in grid])) if len(grid) else 0.0
        hit = sum(_holds(times, a, b) for a, b in windows)
        n = len(windows)
        chance = sum(math.comb(n, k) * share**k * (1 - share) ** (n - k) for k in range(hit, n + 1))
        lines.append(
            f"    a reference wake-up >= {1000 * lag:.1f} ms late: in {hit} of them; in {100 * share:.0f}% of all "
            f"1.5 s windows of the run; {hit} or more by chance: p = {chance:.2g}"
        )
    return lines


def main(argv=None) -> int:
    """``python bench/timing_report.py DIR``: the breakdown of a soak kept with ``bench/live.py --keep DIR``."""
    import argparse
    from pathlib import Path

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("dir", type=Path)
    args = p.parse_args(argv)
    rec = load(args.dir / "timing.npz")
    context = load(args.dir / "soak.npz") if (args.dir / "soak.npz").exists() else None
    period = float(context["period"]) if context is not None else 256 / 48000
    windows = []
    if context is not None:
        stalls = context["wakeups"][context["wakeups"][:, 1] > period / 2] if len(context["wakeups"]) else []
        windows = [
            (t - 1.5, t) for t, _ in context["xrun_seconds"] if not any(t - 1.5 <= s <= t for s, _ in stalls)
        ]
    print("\n".join(summary(rec, period, windows, context)))
    if context is not None:
        print("\n".join(coincidence(context, windows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
