"""Stopping signals: SIGINT, SIGTERM and SIGHUP end every job the same clean way.

Inside :func:`raising` (the command line runs every command in it) each of the three raises
:class:`Stopped` in the main thread. ``Stopped`` is a ``KeyboardInterrupt``: whatever cleans up
after Ctrl-C (a temporary output file removed, a progress line cleared, a renderer thread
stopped) cleans up after SIGTERM and SIGHUP too, and ``except Exception`` does not swallow it.
Only the first signal raises: later ones are ignored while the job unwinds, so a second SIGTERM
cannot cut its clean-up short. A job that stops itself in a loop (live play) uses
:func:`flag_on_stop`, which only records the signal. Either way the process's exit status is
``128 + signal number`` (:func:`exit_code`): 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """A stopping signal arrived; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


def exit_code(exc: BaseException) -> int:
    """The exit status for a stop: 128 + the signal's number (SIGINT for a plain KeyboardInterrupt)."""
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


def name(exc: BaseException) -> str:
    return signal.Signals(getattr(exc, "signum", signal.SIGINT)).name


@contextlib.contextmanager
def raising():
    """SIGINT, SIGTERM and SIGHUP raise :class:`Stopped` (the first one only) while the block runs."""
    restore = raise_on_stop()
    try:
        yield
    finally:
        restore()


def raise_on_stop() -> Callable[[], None]:
    """From now on a stopping signal raises :class:`Stopped` (the first one only); returns the
    function that puts the previous handlers back. Outside the main thread, where Python cannot
    install handlers, it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    fired: list[int] = []

    def handler(signum, frame):
        if not fired:
            fired.append(signum)
            raise Stopped(signum)

    return _install(handler)


def flag_on_stop(stop: threading.Event) -> tuple[list[int], Callable[[], None]]:
    """From now on a stopping signal sets ``stop``: returns the list that receives the signals'
    numbers (first one first) and the function that puts the previous handlers back."""
    received: list[int] = []

    def handler(signum, frame):
        received.append(signum)
        stop.set()

    return received, _install(handler)


def _install(handler) -> Callable[[], None]:
    # A signal ignored when the job starts stays ignored, as Python does for SIGINT: `nohup` (SIGHUP)
    # and a background job of a script (SIGINT) chose that for it.
    old = {s: signal.signal(s, handler) for s in STOP_SIGNALS if signal.getsignal(s) != signal.SIG_IGN}

    def restore() -> None:
        for s, previous in old.items():
            signal.signal(s, previous)

    return restore
