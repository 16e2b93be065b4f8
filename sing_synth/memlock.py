"""Keep a live session's memory in RAM: ``mlockall`` where the system permits it, a note where not.

A page the audio callback touches must not be on disk when it does: a note swapped out, or a page
of NumPy's or the interpreter's code dropped from the page cache under memory pressure, costs the
callback a read from disk (a major page fault) in the middle of a block. ``lock()`` asks the kernel
to keep every page of the process in RAM once it has been touched (``MCL_CURRENT | MCL_FUTURE |
MCL_ONFAULT``): pages already resident stay, a page faulted in later stays from then on, and
nothing is faulted in by the call itself (the note bank's unused slots, the unused parts of the
libraries, stay unbacked: locking costs no memory the session does not already use).

Where it is permitted: Linux with ``MCL_ONFAULT`` (4.4 and later), run as root (the capability
``CAP_IPC_LOCK``) or with an unlimited ``RLIMIT_MEMLOCK`` (the ``audio`` group's usual limit). A
finite limit is not tried: with ``MCL_FUTURE`` every later allocation past it would fail. Anything
else returns a one-line note saying why and how to permit it; the session plays on unlocked.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT = 1, 2, 4  # <sys/mman.h> on Linux

_locked = False


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def limit() -> int | None:
    """RLIMIT_MEMLOCK's soft limit in bytes; None: unlimited (or no such limit here)."""
    try:
        import resource
    except ImportError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def permitted() -> str | None:
    """None when :func:`lock` may lock the memory here, else why not (part of the note)."""
    if not sys.platform.startswith("linux"):
        return f"not on {sys.platform}"
    cap = limit()
    if cap is not None and os.geteuid() != 0:
        return (
            f"RLIMIT_MEMLOCK is {cap // 1024} KiB (unlimited is needed: add the user to the audio "
            "group, or set memlock unlimited in /etc/security/limits.conf)"
        )
    return None


def lock() -> str | None:
    """Lock the process's pages in RAM as they are touched (see the module docstring); None when
    done, else a one-line note saying why not (the session plays on unlocked)."""
    global _locked
    why = permitted()
    if why is not None:
        return f"memory not locked in RAM: {why}"
    libc = _libc()
    if libc.mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0:
        err = ctypes.get_errno()
        return f"memory not locked in RAM: mlockall failed ({os.strerror(err)})"
    _locked = True
    return None


def unlock() -> None:
    """Undo :func:`lock` (at the end of a session; the pages stay where they are)."""
    global _locked
    if _locked:
        _libc().munlockall()
        _locked = False
