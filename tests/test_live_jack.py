"""Live play end to end on a JACK dummy server: real MIDI in, real audio out, recorded by a client.

`sing-synth --virtual` runs as a subprocess with a tiny seeded preset (the full start-up path:
preset, renderer thread, note cache on disk, PortAudio stream, rtmidi port). A JACK-Client MIDI
port sends notes at exact frames and a second JACK client records the synth's output, so the
graph is a chain sender -> synth -> recorder and every latency is read on one timeline.

"The right pitch": an untrained tiny model has no clear fundamental, but each of its pitches is
still a different waveform. The synth plays rendered notes sample for sample, so each recorded
note must equal the same note rendered offline by the same preset through NoteRenderer (up to
its gain), and fit that pitch far better than its neighbours; a chord must decompose, by least
squares over the offline renders of the nearby pitches, into exactly its own notes.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from engine_fixtures import tiny_preset  # noqa: F401
from job_fixtures import handles

from sing_synth.testing.jack_server import REPLAYS, MidiSender, Recorder, Synth, onsets, replays

jack = pytest.importorskip("jack")

RATE, PERIOD = 48000, 256
VEL = 100
RELEASE_S = 0.35  # the engine's 0.25 s release has ended by then
# (seconds, bytes): two single notes, a chord, a pedalled note
SCRIPT = [
    (0.50, (0x90, 60, VEL)),
    (0.90, (0x80, 60, 0)),
    (1.40, (0x90, 65, VEL)),
    (1.70, (0x80, 65, 0)),
    (2.20, (0x90, 60, VEL)),
    (2.20, (0x90, 64, VEL)),
    (2.20, (0x90, 67, VEL)),
    (2.60, (0x80, 60, 0)),
    (2.60, (0x80, 64, 0)),
    (2.60, (0x80, 67, 0)),
    (3.10, (0xB0, 64, 127)),
    (3.15, (0x90, 62, VEL)),
    (3.30, (0x80, 62, 0)),
    (4.00, (0xB0, 64, 0)),
]
NOTE_ONS = [0.50, 1.40, 2.20, 3.15]
LENGTH = 4.6


def fit(x: np.ndarray, refs: dict, n: int) -> tuple[dict, float]:
    """Least-squares weights of the references in ``x[:n]`` and the median, over JACK periods, of
    the relative residual energy; periods an xrun damaged (10x the median) are left out of the
    weights, so one lost period on a busy machine does not hide a perfect match."""
    keys = list(refs)
    a = np.stack([refs[k][:n] for k in keys], axis=1).astype(np.float64)
    y = x[:n].astype(np.float64)
    blocks = n // PERIOD
    use = np.ones(n, bool)
    for _ in range(2):
        w, *_ = np.linalg.lstsq(a[use], y[use], rcond=None)
        err = ((y - a @ w) ** 2)[: blocks * PERIOD].reshape(blocks, PERIOD).sum(1)
        energy = (y**2)[: blocks * PERIOD].reshape(blocks, PERIOD).sum(1) + 1e-30
        per_period = err / energy
        bad = per_period > 10 * np.median(per_period) + 1e-12
        use = np.ones(n, bool)
        use[: blocks * PERIOD] = ~np.repeat(bad, PERIOD)
    return dict(zip(keys, w)), float(np.median(per_period))


def residual(x: np.ndarray, ref: np.ndarray, n: int) -> float:
    return fit(x, {0: ref}, n)[1]


def chord_fit(x: np.ndarray, refs: dict, pitches, n: int, max_shift: int) -> tuple[dict, dict, float]:
    """Weights, start offsets (frames, 0..``max_shift``) and relative residual of ``x[:n]`` as a sum
    of the notes. The untrained notes are alike (correlations 0.9996 and more), so a search one
    note at a time stalls beside the answer: every combination of starts is scored, by least
    squares on the notes' Gram matrices (dot products of the shifted notes, computed once)."""
    k = max_shift + 1
    y = x[:n].astype(np.float64)
    r = {p: refs[p][:n].astype(np.float64) for p in pitches}
    # rhs[i, a] = <note i started a frames in, x>; gram[i, j, a, b] = <note i at a, note j at b>
    rhs = np.array([[r[p][: n - a] @ y[a:] for a in range(k)] for p in pitches])
    gram = np.empty((len(pitches), len(pitches), k, k))
    for i, p in enumerate(pitches):
        for j, q in enumerate(pitches):
            for a in range(k):
                for b in range(k):
                    lo = max(a, b)
                    gram[i, j, a, b] = r[p][lo - a : n - a] @ r[q][lo - b : n - b]
    grid = np.stack(np.meshgrid(*[np.arange(k)] * len(pitches), indexing="ij"), -1).reshape(-1, len(pitches))
    idx = np.arange(len(pitches))
    g = gram[idx[:, None], idx[None, :], grid[:, :, None], grid[:, None, :]]  # (combinations, 3, 3)
    v = rhs[idx, grid]  # (combinations, 3)
    w = np.linalg.solve(g, v[..., None])[..., 0]
    best = grid[np.argmin(y @ y - np.sum(w * v, axis=1))]
    shifts = dict(zip(pitches, best.tolist()))

    def shifted(p, a):
        z = np.zeros(n, np.float32)
        z[a:] = refs[p][: n - a]
        return z

    weights, res = fit(x, {p: shifted(p, shifts[p]) for p in pitches}, n)
    return weights, shifts, res


def test_live_notes_chord_and_pedal_on_jack(jack_server, tiny_preset, tmp_path):  # noqa: F811
    # A stall of the machine can make the sender's client miss a period and its MIDI event be lost:
    # a run whose graph reported an xrun is replayed (``replays``); a run without one must pass.
    for attempt in replays():
        run = play_script(jack_server, tiny_preset, tmp_path / f"run{attempt}")
        try:
            check_script(run, tiny_preset)
            return
        except AssertionError:
            if attempt == REPLAYS or run["graph_xruns"] == 0:
                raise
            print(f"xruns in the graph ({run['graph_xruns']}) during run {attempt}: replaying")


def play_script(jack_server, tiny_preset, tmp_path) -> dict:  # noqa: F811
    tmp_path.mkdir()
    ready_file = tmp_path / "playing"
    # the dry instrument: each note is compared sample for sample with its offline render, and the
    # release with silence (the reverb bus, on by default, has a test of its own below)
    synth = Synth(tiny_preset.path, tmp_path / "cache", jack_server.env, PERIOD, "--no-reverb", "--no-chorus",
                  "--ready-file", str(ready_file))  # fmt: skip
    try:
        if not synth.wait_ready(60):
            code, err = synth.stop()
            pytest.fail(f"no ready line (exit {code}):\n{''.join(synth.lines)}{err}")
        assert ready_file.read_text().strip() == str(synth.proc.pid)
        sender, rec = MidiSender(), Recorder()
        try:
            sender.connect("sing-synth")
            rec.connect("PortAudio")
            start = sender.client.frame_time + RATE // 4
            rec.record(start, int(LENGTH * RATE))
            sender.schedule((start + round(t * RATE), data) for t, data in SCRIPT)
            x = rec.wait(LENGTH + 5)[:, 0].copy()
            assert sender.done
            code, err = synth.stop()  # before our clients leave: JACK2 makes xruns when clients go
        finally:
            sender.close()
            rec.close()
    finally:
        code, err = synth.stop()
    out = "".join(synth.lines)
    assert code == 128 + signal.SIGTERM, err  # a clean stop by SIGTERM: exit 143
    assert not ready_file.exists()  # removed on the way out
    assert synth.info("stopped:"), out + err
    assert "MIDI input: sing-synth" in out and f"block {PERIOD} frames" in out and "Hz" in out
    print(f"synth xruns {synth.xruns}, recorder xruns {rec.xruns}")
    assert synth.xruns >= 0, out  # reported on the way out
    return {"x": x, "out": out, "err": err, "xruns": synth.xruns, "graph_xruns": synth.xruns + rec.xruns}


def check_script(run: dict, tiny_preset) -> None:  # noqa: F811
    x, out, err = run["x"], run["out"], run["err"]
    # xruns are counted, not assumed away. PortAudio counts every xrun of the JACK graph, whoever was
    # late, and this VM has stretches of stalls (bench/live.py's soak tells them apart with a probe):
    # a synth too slow for its period would miss most of the ~900 periods; allow 2% of them
    assert run["xruns"] <= int(LENGTH * RATE / PERIOD) // 50, (run["xruns"], out)

    def at(t):
        return round(t * RATE)

    period_ms = 1000 * PERIOD / RATE
    # onsets: one per note-on (the chord is one onset), nothing before the first note
    found = onsets(x, gap=RATE // 20)
    assert len(found) == len(NOTE_ONS), (found, out, err)
    latency_ms = [1000 * (o - at(t)) / RATE for o, t in zip(found, NOTE_ONS)]
    print(f"latency {np.round(latency_ms, 2)} ms")
    # JACK MIDI through rtmidi arrives stamped per period (the position inside the period is lost),
    # so the latency varies by up to a period; in JACK's frame semantics a synth may even sound
    # before the event's offset inside the period it arrived in (a JACK-native synth: latency 0)
    assert all(-period_ms <= ms <= 1.5 * period_ms + 2 for ms in latency_ms), latency_ms
    assert max(latency_ms) - min(latency_ms) <= period_ms + 1.5, latency_ms
    lag = int(np.median(found - np.array([at(t) for t in NOTE_ONS])))

    # releases: silence shortly after each note-off (the pedalled note: after the pedal goes up)
    for off, next_on in ((0.90, 1.40), (1.70, 2.20), (2.60, 3.15), (4.00, LENGTH)):
        quiet = x[at(off + RELEASE_S) + lag : at(next_on) - PERIOD]
        assert np.abs(quiet).max() <= 1e-6, (off, np.abs(quiet).max())

    # the right notes: each equals its offline render, and not a neighbour's
    from sing_synth.renderer import NoteRenderer

    renderer = NoteRenderer(tiny_preset, device="cpu", output_rate=RATE)
    refs = {p: renderer.render_velocity(0, p, VEL) for p in range(55, 73)}
    n = at(0.25)  # every note is held at least 0.3 s: compare while the key is down
    for o, pitch in ((found[0], 60), (found[1], 65)):
        own = residual(x[o:], refs[pitch], n)
        others = min(residual(x[o:], refs[p], n) for p in refs if p != pitch)
        assert own < 1e-4 and others > 30 * own, (pitch, own, others)
    # the chord: its three notes at equal weights, starting within 1 ms of each other; the same
    # chord a semitone off (either way, or any one note off) fits far worse
    chord = (60, 64, 67)
    weights, shifts, res = chord_fit(x[found[2] :], refs, chord, n, max_shift=RATE // 1000)
    print(f"chord: weights {weights}, starts {shifts}, residual {res:.2g}")
    assert res < 1e-4 and min(weights.values()) > 0.9 * max(weights.values()), (weights, shifts, res)
    wrong = [tuple(p + d * (p == q) for p in chord) for q in chord for d in (-1, 1)] + [(59, 63, 66), (61, 65, 68)]
    worst_case = min(fit(x[found[2] + min(shifts.values()) :], {p: refs[p] for p in c}, n)[1] for c in wrong)
    assert worst_case > 30 * res, (worst_case, res)

    # sustain pedal: the note released at 3.30 s plays on, unchanged, until the pedal is up at 4.00 s
    held = at(4.00) - at(3.15) - PERIOD
    assert residual(x[found[3] :], refs[62], held) < 1e-4
    assert np.sqrt(np.mean(x[at(3.40) + lag : at(3.95) + lag] ** 2)) > 1e-3


def test_live_reverb_send_leaves_a_tail(jack_server, tiny_preset, tmp_path):  # noqa: F811
    """The effect buses run in the live callback: after a note sent to the reverb (CC91 100) and
    released, the output goes on sounding where the dry instrument is silent."""
    synth = Synth(tiny_preset.path, tmp_path / "cache", jack_server.env, PERIOD)
    try:
        if not synth.wait_ready(60):
            code, err = synth.stop()
            pytest.fail(f"no ready line (exit {code}):\n{''.join(synth.lines)}{err}")
        sender, rec = MidiSender(), Recorder()
        try:
            sender.connect("sing-synth")
            rec.connect("PortAudio")
            start = sender.client.frame_time + RATE // 4
            rec.record(start, int(2.5 * RATE))
            script = [(0.2, (0xB0, 91, 100)), (0.5, (0x90, 60, VEL)), (0.9, (0x80, 60, 0))]
            sender.schedule((start + round(t * RATE), data) for t, data in script)
            x = rec.wait(2.5 + 5)[:, 0].copy()
            synth.stop()
        finally:
            sender.close()
            rec.close()
    finally:
        synth.stop()
    out = "".join(synth.lines)
    assert "effects: reverb from CC91" in out and "chorus from CC93" in out, out
    # the dry note has died away 0.35 s after its release (plus a period of scheduling delay)
    tail = x[round((0.9 + RELEASE_S + 0.05) * RATE) : round(2.2 * RATE)]
    held = x[round(0.6 * RATE) : round(0.85 * RATE)]
    rms = np.sqrt(np.mean(tail.astype(np.float64) ** 2))
    assert 1e-5 < rms < np.sqrt(np.mean(held.astype(np.float64) ** 2)), rms


def test_live_morph_plays_a_stand_in_then_the_new_position(jack_server, tiny_preset, tmp_path):  # noqa: F811
    """``--morph``: CC16 moves the channel to the middle of the line from instrument 0 to 1. The first
    note there sounds at once as the nearest made position at its pitch (instrument 0 itself), the
    renderer thread makes the position's note meanwhile, and the same note played again is the blend,
    sample for sample as NoteRenderer makes it offline. A run whose graph reported an xrun is
    replayed, as in the note-for-note test above."""
    from sing_synth.morph import Morph
    from sing_synth.renderer import NoteRenderer

    line = Morph((0, 1))
    renderer = NoteRenderer(tiny_preset, device="cpu", output_rate=RATE)
    renderer.add_blends(line.blends())
    a, middle = renderer.render_velocity(0, 60, VEL), renderer.render_velocity(line.instrument(8), 60, VEL)
    n = round(0.25 * RATE)
    for attempt in replays():
        x, out, err, xruns = play_morph(jack_server, tiny_preset, tmp_path / f"run{attempt}")
        try:
            assert "instrument: morph tiny piano / tiny strings (CC16, 16 steps)" in out, out
            found = onsets(x, gap=RATE // 20)
            assert len(found) == 2, (found, out, err)
            first, second = x[found[0] :], x[found[1] :]
            fits = [[residual(note, ref, n) for ref in (a, middle)] for note in (first, second)]
            seen = f"residuals (stand-in, position) of the two notes {fits}; onsets {found}; xruns {xruns}"
            assert fits[0][0] < 1e-4 and fits[0][1] > 3 * fits[0][0], seen
            assert fits[1][1] < 1e-4 and fits[1][0] > 3 * fits[1][1], seen
            return
        except AssertionError:
            if attempt == REPLAYS or xruns == 0:
                raise
            print(f"xruns in the graph ({xruns}) during run {attempt}: replaying")


def play_morph(jack_server, tiny_preset, tmp_path) -> tuple:  # noqa: F811
    """The morph script played once: the recording, the synth's output and errors, the graph's xruns."""
    cache = tmp_path / "cache"
    synth = Synth(tiny_preset.path, cache, jack_server.env, PERIOD, "--no-reverb", "--no-chorus", "--morph", "1")
    try:
        if not synth.wait_ready(60):
            code, err = synth.stop()
            pytest.fail(f"no ready line (exit {code}):\n{''.join(synth.lines)}{err}")
        # the morph's other end is made behind the warm-up: play once the renderer thread is idle
        deadline = time.monotonic() + 120
        while sum(1 for _ in cache.glob("*/1/*.note")) < (96 - 28 + 1) * 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        sender, rec = MidiSender(), Recorder()
        try:
            sender.connect("sing-synth")
            rec.connect("PortAudio")
            start = sender.client.frame_time + RATE // 4
            rec.record(start, int(2.4 * RATE))
            script = [(0.2, (0xB0, 16, 64)), (0.5, (0x90, 60, VEL)), (0.8, (0x80, 60, 0)),
                      (1.6, (0x90, 60, VEL)), (1.9, (0x80, 60, 0))]  # fmt: skip
            sender.schedule((start + round(t * RATE), data) for t, data in script)
            x = rec.wait(2.4 + 5)[:, 0].copy()
            synth.stop()
        finally:
            sender.close()
            rec.close()
    finally:
        code, err = synth.stop()
    assert code == 128 + signal.SIGTERM, err
    return x, "".join(synth.lines), err, synth.xruns + rec.xruns + rec.gaps


def test_a_missing_midi_input_fails_fast_with_the_list(jack_server, tiny_preset, tmp_path):  # noqa: F811
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sing_synth",
            "--midi-in",
            "no such keyboard",
            "--midi-api",
            "jack",
            "--preset",
            str(tiny_preset.path),
            "--cache-dir",
            str(tmp_path),
        ],
        env=jack_server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sing-synth: error: no MIDI input matches 'no such keyboard'")
    assert "sing-synth ports" in lines[0] and not list(tmp_path.iterdir())  # nothing rendered, nothing written


@pytest.mark.parametrize("when", ["playing", "warming up"])
def test_sighup_stops_live_play_cleanly_with_129(jack_server, tiny_preset, tmp_path, when):  # noqa: F811
    """A closed terminal (SIGHUP) stops live play like Ctrl-C, before ready as after: exit 128 + 1,
    the ready file removed."""
    ready_file = tmp_path / "playing"
    synth = Synth(tiny_preset.path, tmp_path / "cache", jack_server.env, PERIOD, "--ready-file", str(ready_file))
    try:
        if when == "playing":
            assert synth.wait_ready(60), "".join(synth.lines)
        else:  # as soon as its handlers are in place: the warm-up renders the instrument's notes
            deadline = time.monotonic() + 60
            while not handles(synth.proc.pid, signal.SIGHUP) and time.monotonic() < deadline:
                time.sleep(0.005)
        synth.proc.send_signal(signal.SIGHUP)
        synth.proc.wait(30)
    finally:
        code, err = synth.stop()
    assert code == 128 + signal.SIGHUP, err
    assert not ready_file.exists() and "Traceback" not in err
    if when == "playing":
        assert synth.info("stopped:")
    else:
        assert "stopped by SIGHUP" in err or synth.info("stopped:")  # it may have just got ready


def test_a_warm_start_reads_every_note_from_disk_and_imports_no_torch(jack_server, tiny_preset, tmp_path):  # noqa: F811
    """The first start renders the instrument's notes into the disk cache; the next one finds them
    all there: it plays without loading the model, so torch is never imported (the interpreter's
    own record of every import says so)."""
    import re

    env = {**jack_server.env, "PYTHONPROFILEIMPORTTIME": "1"}
    torch_line = re.compile(r"^import time:.*\|\s*torch(\.|\s*$)", re.M)
    runs = []
    notes = 88 * 5  # the tiny piano's pitches 21-108, five velocity layers
    for _ in range(2):
        synth = Synth(tiny_preset.path, tmp_path / "cache", env, PERIOD)
        ready = synth.wait_ready(120)
        deadline = time.monotonic() + 120  # ready at the common velocities: the other layers follow
        while ready and len(list((tmp_path / "cache").rglob("*.note"))) < notes and time.monotonic() < deadline:
            time.sleep(0.2)
        code, err = synth.stop()
        assert ready and code == 143, err[-3000:]  # stopped by SIGTERM
        runs.append((synth.info("instrument:"), bool(torch_line.search(err))))
    (cold, cold_torch), (warm, warm_torch) = runs
    assert cold_torch and "0 from disk" in cold and " 0 rendered" not in cold, cold
    assert not warm_torch and "(0 rendered, " in warm, warm
