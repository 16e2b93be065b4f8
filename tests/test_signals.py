"""Stopping signals: SIGINT, SIGTERM and SIGHUP raise one Stopped, or set a flag; exit 128 + signal."""

import os
import signal
import threading

import pytest

from sing_synth import signals


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
    received, restore = signals.flag_on_stop(stop)
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        assert stop.wait(1)
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
        restore()
    assert received == [signal.SIGHUP, signal.SIGTERM]
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL
