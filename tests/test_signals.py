"""Stopping signals: SIGINT, SIGTERM and SIGHUP raise one Stopped, or set a flag; exit 128 + signal; a job they stop leaves nothing behind."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from engine_fixtures import tiny_preset  # noqa: F401
from job_fixtures import handles

from sing_synth import signals
from sing_synth.testing import songs
from sing_synth.testing.jack_server import default_stop_signals


@pytest.fixture(autouse=True)
def stop_signals_at_their_defaults():
    """The suite may run under `nohup` (SIGHUP ignored) or as a script's background job (SIGINT
    ignored); a job keeps a signal ignored at its start, so these tests start from the defaults."""
    before = {s: signal.signal(s, signal.SIG_DFL) for s in (signal.SIGHUP,)}
    before[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    for s, handler in before.items():
        signal.signal(s, handler)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stopping_signal_raises_once_and_the_handlers_come_back(sig):
    before = signal.getsignal(sig)
    with pytest.raises(KeyboardInterrupt) as info, signals.raising():
        try:
            os.kill(os.getpid(), sig)
        finally:  # the clean-up a job does on the way out: a second signal does not cut it short
            os.kill(os.getpid(), signal.SIGTERM)
    assert isinstance(info.value, signals.Stopped) and info.value.signum == sig
    assert signals.exit_code(info.value) == 128 + sig and signals.name(info.value) == sig.name
    assert signal.getsignal(sig) == before
    assert signals.exit_code(KeyboardInterrupt()) == 130  # a plain Ctrl-C


def test_flag_on_stop_records_the_signals_in_order():
    stop = threading.Event()
    before = signal.getsignal(signal.SIGHUP)
    received, restore = signals.flag_on_stop(stop)
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        assert stop.wait(1)
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
        restore()
    assert received == [signal.SIGHUP, signal.SIGTERM]
    assert signal.getsignal(signal.SIGHUP) == before



def test_a_signal_ignored_at_the_start_stays_ignored():
    """Under `nohup` SIGHUP is ignored: a long render must not stop when the terminal goes."""
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        received, restore = signals.flag_on_stop(threading.Event())
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_IGN, signal.SIG_DFL)
        restore()
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


@pytest.mark.parametrize(
    "command, sig, when",
    [("render", signal.SIGTERM, "mixing"), ("render", signal.SIGHUP, "start"), ("note", signal.SIGTERM, "start"),
     ("learn", signal.SIGTERM, "start")],
)
def test_a_signal_stops_a_job_cleanly(tmp_path, tiny_preset, command, sig, when):  # noqa: F811
    """SIGTERM a few seconds into a long render once left its .part file behind: now SIGTERM and
    SIGHUP stop any job like Ctrl-C, with nothing left and the exit status 128 + signal."""
    out = tmp_path / "out"
    out.mkdir()
    if command == "render":
        song = tmp_path / "long.mid"
        songs.song(10).save(song)
        argv = ["render", str(song), "-o", str(out / "long.wav"), "--rate", "8000"]
    elif command == "note":
        argv = ["note", "--pitch", *map(str, range(30, 90)), "-o", str(out / "n.wav")]
    else:
        import soundfile

        (tmp_path / "rec").mkdir()
        t = np.arange(32000) / 16000
        soundfile.write(str(tmp_path / "rec" / "C4.wav"), 0.3 * np.sin(2 * np.pi * 261.63 * t), 16000)
        argv = ["learn", str(tmp_path / "rec"), "--name", "Sine", "-o", str(out / "mine")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sing_synth", *argv, "--preset", str(tiny_preset.path), "--model-device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_stop_signals,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if handles(proc.pid, sig) and (when == "start" or any(p.stat().st_size > 1000 for p in out.iterdir())):
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the job ended before the signal"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    assert err.splitlines()[-1] == f"sing-synth: stopped by {signal.Signals(sig).name}" and "Traceback" not in err
    assert list(out.iterdir()) == []  # no .part file, no output
