"""The audio thread's wake-up of the renderer: never blocks, takes no lock, keeps nothing allocated."""

import os
import sys
import threading
import time
import tracemalloc

import pytest

from sing_synth.wake import Wake

KINDS = [k for k in ("eventfd", "pipe", "poll") if k != "eventfd" or hasattr(os, "eventfd")]


@pytest.fixture(params=KINDS)
def wake(request):
    w = Wake(request.param)
    yield w
    w.close()


def test_the_default_is_an_eventfd_on_linux():
    expected = "eventfd" if hasattr(os, "eventfd") else "pipe" if os.name == "posix" else "poll"
    assert Wake().kind == expected


def test_set_wait_clear_like_an_event(wake):
    assert not wake.is_set() and not wake.wait(0.01)
    wake.set()
    assert wake.wait(0.0) and wake.wait(1.0) and wake.is_set()  # level-triggered: it stays set
    wake.clear()
    assert not wake.is_set()
    t = time.monotonic()
    assert not wake.wait(0.05) and time.monotonic() - t >= 0.04  # the timeout is kept


def test_a_set_from_another_thread_wakes_the_waiter(wake):
    woke = []

    def waiter():
        woke.append((wake.wait(5.0), time.monotonic()))

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.05)
    t = time.monotonic()
    wake.set()
    thread.join(5.0)
    assert woke and woke[0][0] and woke[0][1] - t < 0.5


def test_many_writes_without_a_reader_never_block(wake):
    """More writes than a pipe holds (64 KiB): each returns at once, and one clear forgets them all."""
    t = time.perf_counter()
    for _ in range(100_000):
        wake.set()
    assert time.perf_counter() - t < 10.0  # nothing waited (a blocking write would hang here)
    assert wake.is_set()
    wake.clear()
    assert not wake.is_set()


def _c_calls(job) -> list[str]:
    """The names of the functions written in C that ``job()`` calls (sys.setprofile)."""
    calls = []

    def profile(frame, event, arg):
        if event == "c_call":
            calls.append(getattr(arg, "__qualname__", arg.__name__))

    sys.setprofile(profile)
    try:
        job()
    finally:
        sys.setprofile(None)
    return calls


def test_set_takes_no_lock(wake):
    locks = [c for c in _c_calls(threading.Event().set) if "acquire" in c or "__enter__" in c]
    assert locks, "the check sees an Event's lock"  # what the Wake replaces
    calls = _c_calls(wake.set)
    assert not [c for c in calls if "acquire" in c or "__enter__" in c or "lock" in c.lower()], calls


def test_set_keeps_nothing_allocated(wake):
    for _ in range(100):
        wake.set()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(10_000):
            wake.set()
        now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        wake.clear()
    # 10,000 calls: a few bytes of each kept, or made at once, would show as tens of kilobytes
    assert now - before < 1024 and peak - before < 1024, (now - before, peak - before)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="eventfd, pipe or poll"):
        Wake("futex")
