"""What the tests of sing-synth's jobs share: a short song file, the render command's parser,
leftover hidden files, and whether a process handles a signal."""

from __future__ import annotations

import mido
from engine_fixtures import write_midi

from sing_synth import cli

M = mido.Message


def song_file(path, seconds_per_note: float = 0.25, channels=(0, 1, 9)):
    """A short three-channel song: piano, strings (program 48), drums, with a pedal and a bend."""
    tracks = [
        [mido.MetaMessage("set_tempo", tempo=500000, time=0), mido.MetaMessage("set_tempo", tempo=400000, time=960)]
    ]
    for ch in channels:
        msgs = [M("program_change", channel=ch, program={0: 0, 1: 48}.get(ch, 0), time=0)]
        if ch == 0:
            msgs.append(M("control_change", channel=0, control=64, value=127, time=0))
        for k in range(6):
            pitch = 38 if ch == 9 else 48 + 12 * ch + 2 * k
            msgs += [M("note_on", channel=ch, note=pitch, velocity=40 + 15 * k, time=0)]
            if ch == 1 and k == 3:
                msgs.append(M("pitchwheel", channel=1, pitch=4000, time=60))
            msgs.append(M("note_off", channel=ch, note=pitch, time=int(480 * seconds_per_note / 0.5)))
        tracks.append(msgs)
    return write_midi(path, tracks)


def parse(argv):
    """``sing-synth render ARGV`` parsed by the command line's parser, the model on the CPU."""
    return cli.get_parser().parse_args(["render", *argv, "--model-device", "cpu"])


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def handles(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has installed a handler for ``sig`` (Linux: SigCgt in /proc)."""
    with open(f"/proc/{pid}/status") as f:
        mask = next(line for line in f if line.startswith("SigCgt:")).split()[1]
    return bool(int(mask, 16) >> (sig - 1) & 1)
