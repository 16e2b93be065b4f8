"""Memory locked in RAM for live play where permitted, a one-line note where not, no memory made resident."""

import subprocess
import sys

import pytest

from sing_synth import memlock


def test_a_finite_limit_is_not_tried_and_the_note_says_how_to_permit_it(monkeypatch):
    monkeypatch.setattr(memlock.sys, "platform", "linux")
    monkeypatch.setattr(memlock, "limit", lambda: 8 << 20)
    monkeypatch.setattr(memlock.os, "geteuid", lambda: 1000)
    calls = []
    monkeypatch.setattr(memlock, "_libc", lambda: calls.append(1))
    note = memlock.lock()
    assert note.startswith("memory not locked in RAM: RLIMIT_MEMLOCK is 8192 KiB") and "\n" not in note
    assert "audio group" in note and not calls


def test_a_failing_mlockall_is_a_note_not_an_error(monkeypatch):
    class Libc:
        def mlockall(self, flags):
            assert flags == memlock.MCL_CURRENT | memlock.MCL_FUTURE | memlock.MCL_ONFAULT
            return -1

    monkeypatch.setattr(memlock, "permitted", lambda: None)
    monkeypatch.setattr(memlock, "_libc", Libc)
    note = memlock.lock()
    assert note.startswith("memory not locked in RAM: mlockall failed") and "\n" not in note
    memlock.unlock()  # nothing was locked: nothing to undo


def test_other_systems_are_not_tried(monkeypatch):
    monkeypatch.setattr(memlock.sys, "platform", "darwin")
    assert memlock.lock() == "memory not locked in RAM: not on darwin"


CHILD = """
import numpy as np
from sing_synth import memlock

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])  # kB

note = memlock.lock()
print(note)
if note is None:
    rss = status("VmRSS:")
    big = np.zeros(256 << 20, np.uint8)  # a locked process still leaves untouched pages unbacked
    grown = status("VmRSS:") - rss
    big[: 1 << 20] = 1  # touched pages are locked
    print(status("VmLck:") > 0, grown < 16 << 10)
    memlock.unlock()
    print(status("VmLck:"))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mlockall is Linux's here")
def test_locking_makes_nothing_resident_and_unlocks():
    # in a child process: the test run itself is never locked
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True)
    lines = out.stdout.split("\n")
    if lines[0] != "None":
        assert lines[0].startswith("memory not locked in RAM: ")  # not permitted here: the note
        return
    assert lines[1] == "True True"  # locked, and a 256 MiB np.zeros did not become resident
    assert lines[2] == "0"
