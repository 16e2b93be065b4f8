"""A wake-up the audio thread can give another thread: no lock, never blocks, nothing kept.

:class:`Wake` stands in for ``threading.Event`` where the setter is the audio callback: an
Event's ``set`` takes its Condition's lock, which the waiting thread may hold at that moment (a
wait on a normal-priority thread, so the real-time thread would wait for it). Here ``set`` is
one non-blocking write to a file descriptor and ``wait`` a poll(2) on it:

- Linux: an eventfd (a kernel counter: a write adds 1, a read takes it back to 0);
- other POSIX systems: a pipe, both ends non-blocking (a full pipe is already a wake-up);
- elsewhere (Windows): a plain flag, which ``wait`` looks at every ``POLL`` seconds.

Like an Event it is level-triggered: ``set`` then ``wait`` returns at once until ``clear``.
One thread waits and clears; any thread may set.
"""

from __future__ import annotations

import os
import select
import time

POLL = 0.005  # s between two looks at the flag where there is neither eventfd nor pipe


class Wake:
    """Set by any thread (the audio callback included), waited for and cleared by one thread."""

    def __init__(self, kind: str | None = None) -> None:
        if kind is None:
            kind = "eventfd" if hasattr(os, "eventfd") else "pipe" if os.name == "posix" else "poll"
        self.kind = kind
        self._flag = False
        self._r = self._w = -1
        if kind == "eventfd":
            self._r = self._w = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        elif kind == "pipe":
            self._r, self._w = os.pipe()  # close-on-exec by default (PEP 446)
            os.set_blocking(self._r, False)
            os.set_blocking(self._w, False)
        elif kind != "poll":
            raise ValueError(f"unknown wake-up kind {kind!r}: use eventfd, pipe or poll")
        if self._r != -1:
            self._poll = select.poll()  # not select.select: it refuses descriptors past 1023
            self._poll.register(self._r, select.POLLIN)

    def set(self) -> None:
        """Wake the waiter (any thread; never blocks, takes no lock)."""
        if self.kind == "eventfd":
            os.eventfd_write(self._w, 1)  # the counter overflows after 2**64 - 2 unread writes
        elif self.kind == "pipe":
            try:
                os.write(self._w, b"\0")
            except BlockingIOError:  # the pipe is full: the waiter has plenty to wake it
                pass
        else:
            self._flag = True

    def clear(self) -> None:
        """Forget the wake-ups so far (the waiting thread)."""
        if self.kind == "eventfd":
            try:
                os.eventfd_read(self._r)
            except BlockingIOError:  # the counter was 0
                pass
        elif self.kind == "pipe":
            try:
                while os.read(self._r, 4096):
                    pass
            except BlockingIOError:  # empty
                pass
        else:
            self._flag = False

    def is_set(self) -> bool:
        return self.wait(0.0)

    def wait(self, timeout: float) -> bool:
        """Until set (True, and it stays set until ``clear``) or ``timeout`` seconds (False)."""
        if self.kind == "poll":
            deadline = time.monotonic() + timeout
            while not self._flag and time.monotonic() < deadline:
                time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
            return self._flag
        return bool(self._poll.poll(1000 * timeout))

    def close(self) -> None:
        for fd in {self._r, self._w} - {-1}:
            os.close(fd)
        self._r = self._w = -1

    def __del__(self) -> None:
        if self._r != -1:
            self.close()
