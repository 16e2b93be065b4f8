"""The engine clocked by a song: its events pushed at their frames, block by block, then the tail until the sound dies away."""

from __future__ import annotations

import numpy as np

from .engine import Engine
from .note_plan import NotePlan
from .progress import Progress

EVENT_CHUNK = 1 << 16  # events turned into Python lists at a time while mixing


def mix_song(
    engine: Engine, song, writer, block: int, tail: float, threshold_db: float, bar: Progress, plan: NotePlan | None
) -> int:
    """Run the engine over the song's events; write everything up to the end of the sound. Returns frames.

    With a ``plan``, the notes of the events are made resident before the events are queued; a
    block ends early where the queued events must be played before the next ones' notes fit."""
    events = song.events
    n_events = len(events)
    end = song.end
    cap = end + int(round(tail * engine.rate))
    threshold = 10.0 ** (threshold_db / 20.0)
    buf = np.zeros((block, 2), np.float32)
    held: list[np.ndarray] = []  # audio after the last event, trimmed at the end
    held_stems: list[np.ndarray] = []  # the same of the stems, (lanes, 2, frames)
    stems = engine.stems
    frame = i = queued = 0  # queued: the first event the engine has not played yet
    ready = 0 if plan is not None else n_events  # the events before it have their notes resident
    rows, first = [], 0  # rows[k] is event first + k: lists made a chunk at a time (a song's could take GBs)
    times = np.ascontiguousarray(events[:, 0]) if plan is not None else None
    while True:
        n = min(block, end - frame) if frame < end else min(block, cap - frame)
        if n <= 0:
            break
        while i < n_events:
            if i - first >= len(rows):
                rows, first = events[i : i + EVENT_CHUNK].tolist(), i
            t, kind, ch, a, b = rows[i - first]
            if t >= frame + n:
                break
            if i >= ready:
                ready = plan.prepare(queued, i)
                bar.bar(f"mixing ({plan.made} notes made, {plan.dropped} dropped)", frame, max(end, 1))
                if ready <= i:  # no room until the queued events are played
                    n = max(1, t - frame)
                    break
            if not engine.push(kind, ch, a, b, t):
                n = max(1, t - frame)  # queue full: play up to this event first
                break
            i += 1
        engine.process(buf[:n])
        frame += n
        if plan is not None:
            queued = min(i, int(np.searchsorted(times, frame)))
        if frame <= end:
            writer.write(buf[:n], [] if stems is None else stems[:, :, :n].transpose(0, 2, 1))
            bar.bar("mixing", frame, max(end, 1))
            continue
        held.append(buf[:n].copy())
        if stems is not None:
            held_stems.append(stems[:, :, :n].copy())
        quiet = float(np.max(np.abs(buf[:n]))) < threshold
        if frame >= cap or (i >= n_events and (quiet or not engine.sounding)):
            break
    if held:
        rest = np.concatenate(held)
        loud = np.nonzero(np.max(np.abs(rest), axis=1) >= threshold)[0]
        keep = int(loud[-1]) + 1 if len(loud) else 0
        still_sounding = keep == len(rest)
        rest = rest[:keep]
        rest_stems = np.concatenate(held_stems, axis=2)[:, :, :keep].transpose(0, 2, 1) if stems is not None else []
        if frame >= cap and still_sounding and keep:  # cut by the cap while still sounding: fade out
            k = min(keep, int(0.01 * engine.rate))
            fade = np.linspace(1.0, 0.0, k, dtype=np.float32)[:, None]
            rest[-k:] *= fade
            for stem in rest_stems:
                stem[-k:] *= fade
        writer.write(rest, rest_stems)
        return min(frame, end) + keep
    return frame
