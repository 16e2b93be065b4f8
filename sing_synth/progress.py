"""One progress display for long jobs (rendering notes and songs, the live warm-up, training).

A :class:`Progress` is one status line on stderr. On a terminal it is rewritten in place (at
most every ``redraw`` seconds, and whenever it is forced); otherwise (a log file, a pipe, CI)
a line is printed when ``every`` seconds have passed since the display was made or since its
last line, and whenever it is forced, so logs get a heartbeat instead of a flood of redraws.
:meth:`Progress.bar` formats a count as a bar; :meth:`Progress.done` ends the line.
"""

from __future__ import annotations

import sys
import time

BAR_WIDTH = 30


def bar_text(label: str, done: float, total: float, unit: str = "") -> str:
    """``label [#########.....................] 30.0%``, or ``... 3/10 unit`` with a ``unit``."""
    frac = min(1.0, max(0.0, done / total)) if total > 0 else 1.0
    fill = int(frac * BAR_WIDTH)
    amount = f"{done:g}/{total:g} {unit}" if unit else f"{100 * frac:5.1f}%"
    return f"{label} [{'#' * fill}{'.' * (BAR_WIDTH - fill)}] {amount}"


class Progress:
    """A status line: rewritten in place on a terminal, printed every ``every`` s otherwise.

    ``enabled=False`` silences it (e.g. every rank but the first of a distributed run);
    ``stream`` defaults to ``sys.stderr`` at the time the display is made.
    """

    def __init__(self, enabled: bool = True, every: float = 30.0, stream=None, redraw: float = 0.1) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(enabled)
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every, self.redraw = float(every), float(redraw)
        self._last = time.monotonic()  # the last line printed (or the display's creation)
        self._width = 0  # length of the text on the terminal line
        self._text = ""

    def show(self, text: str, force: bool = False) -> None:
        """Show ``text`` as the current status (``force``: now, even in a log)."""
        if not self.enabled or text == self._text and not force:
            return
        now = time.monotonic()
        if not force and now - self._last < (self.redraw if self.tty else self.every):
            return
        self._last, self._text = now, text
        if self.tty:
            pad = " " * max(0, self._width - len(text))  # wipe what a longer line left
            self.stream.write(f"\r{text}{pad}")
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def bar(self, label: str, done: float, total: float, unit: str = "", force: bool = False) -> None:
        """Show a bar of ``done`` out of ``total`` (see :func:`bar_text`); on a terminal the last
        step is always drawn."""
        self.show(bar_text(label, done, total, unit), force or (self.tty and done >= total))

    def done(self, clear: bool = False) -> None:
        """End the status line on a terminal: keep it (a new line follows) or ``clear`` it."""
        if self.enabled and self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r" if clear else "\n")
            self.stream.flush()
        self._width, self._text = 0, ""
