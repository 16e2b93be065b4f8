"""A private JACK dummy server (real-time-paced audio, real MIDI ports) and JACK test clients.

``JackServer`` starts ``jackd -d dummy`` under a unique name and stops it by its pid.
``Synth`` runs ``sing-synth --virtual`` as a subprocess on such a server.
``MidiSender`` writes MIDI at exact frames of the server's timeline and ``Recorder`` records
audio ports with each block placed by its frame time; they are two separate JACK clients, so
sender -> synth -> recorder is a chain JACK can order (one client doing both would form a
cycle, and JACK would shift one side by a period). The tests (``tests/conftest.py`` starts a
server per test module) and ``bench/live.py`` use them; the clients need the JACK-Client package
(the ``dev`` extra), imported when one is made.
"""

from __future__ import annotations

import contextlib
import gc
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import numpy as np


class JackServer:
    def __init__(self, rate: int = 48000, period: int = 256, realtime: bool = False, log: str | None = None):
        self.name = f"sing-test-{uuid.uuid4().hex[:8]}"
        self.rate, self.period = rate, period
        self.realtime = realtime  # -R: real-time scheduling for the server and its clients (root, or rtprio)
        self.log = log  # a file for jackd's verbose output: which client made each xrun
        self.proc = None

    @staticmethod
    def available() -> bool:
        return shutil.which("jackd") is not None and shutil.which("jack_wait") is not None

    @property
    def env(self) -> dict:
        return {**os.environ, "JACK_DEFAULT_SERVER": self.name, "JACK_NO_AUDIO_RESERVATION": "1"}

    def start(self) -> JackServer:
        flags = (["-R"] if self.realtime else []) + (["-v"] if self.log else [])
        out = open(self.log, "w") if self.log else subprocess.DEVNULL  # noqa: SIM115 (the child owns it)
        self.proc = subprocess.Popen(
            ["jackd", *flags, "-n", self.name, "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)],
            env=self.env,
            stdout=out,
            stderr=out,
        )
        if self.log:
            out.close()
        ok = subprocess.run(["jack_wait", "-w", "-t", "10"], env=self.env, capture_output=True).returncode == 0
        if not ok:
            self.stop()
            if self.realtime:  # not allowed real-time scheduling here: run without it
                self.realtime = False
                return self.start()
            raise RuntimeError("jackd did not start")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # a clean TERM lets jackd remove its files in /dev/shm
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            # jackd leaves a semaphore per client that was still registered (e.g. one killed)
            for leftover in glob.glob(f"/dev/shm/jack_sem.*_{self.name}_*"):
                with contextlib.suppress(OSError):
                    os.unlink(leftover)

    def late_clients(self) -> dict[str, int]:
        """From the verbose log: how many xruns each client caused (it was still running, or had
        not even been scheduled, when the period ended; clients merely waiting on it are not counted)."""
        counts: dict[str, int] = {}
        previous = ""
        for line in open(self.log, errors="replace"):
            if "was not finished" in line and "XRun: client = " in line:
                name = line.split("client = ", 1)[1].split(" was not finished")[0]
                if not previous.startswith("JackEngine::XRun"):  # the first one listed for this xrun
                    counts[name] = counts.get(name, 0) + 1
            previous = line.strip()
        return counts

    def __enter__(self) -> JackServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class MidiSender:
    """A JACK client with one MIDI output that sends scheduled messages at exact frames."""

    def __init__(self, name: str = "sing-test-keys"):
        import jack

        self.client = jack.Client(name, no_start_server=True)
        self.port = self.client.midi_outports.register("out")
        self._queue: list = [[], 0]  # messages and the index of the next (no list shifting in the callback)
        self.sent = 0
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames: int) -> None:
        self.port.clear_buffer()
        now = self.client.last_frame_time
        queue = self._queue  # [messages, index of the next one]: replaced whole by schedule()
        pending, k = queue
        while k < len(pending) and pending[k][0] < now + frames:
            at, data = pending[k]
            self.port.write_midi_event(max(at - now, 0), data)
            k += 1
        self.sent += k - queue[1]
        queue[1] = k

    def connect(self, substring: str) -> str:
        ports = [p.name for p in self.client.get_ports(is_midi=True, is_input=True) if substring in p.name]
        assert len(ports) == 1, ports
        self.client.connect(self.port, ports[0])
        return ports[0]

    def schedule(self, events) -> None:
        """``events``: (absolute frame, bytes) pairs; replaces what is still pending."""
        self._queue = [sorted(((int(f), bytes(d)) for f, d in events), key=lambda e: e[0]), 0]

    @property
    def done(self) -> bool:
        pending, k = self._queue
        return k >= len(pending)

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


class Recorder:
    """A JACK client recording stereo input from ``start`` frame for ``frames`` frames."""

    def __init__(self, name: str = "sing-test-rec"):
        import jack

        self.client = jack.Client(name, no_start_server=True)
        self.ins = [self.client.inports.register(f"in_{c}") for c in "LR"]
        self.audio = np.zeros((0, 2), np.float32)
        self.start = None
        self.filled = 0
        self.gaps = 0  # blocks whose frame time did not follow the previous one
        self.xruns = 0  # xruns anywhere in the graph while recording
        self._last = None
        self.finished = threading.Event()
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)
        self.client.activate()

    def _xrun(self, delay) -> None:
        if self.start is not None and not self.finished.is_set():  # while recording only
            self.xruns += 1

    def _process(self, frames: int) -> None:
        now = self.client.last_frame_time
        if self._last is not None and now != self._last + frames:
            self.gaps += 1
        self._last = now
        if self.start is None or now + frames <= self.start:
            return
        a = max(now, self.start) - self.start
        b = min(now + frames - self.start, len(self.audio))
        if a < b:
            k = a - (now - self.start)
            self.audio[a:b, 0] = self.ins[0].get_array()[k : k + b - a]
            self.audio[a:b, 1] = self.ins[1].get_array()[k : k + b - a]
            self.filled = b
        if b >= len(self.audio):
            self.finished.set()

    def connect(self, substring: str) -> list[str]:
        ports = [p.name for p in self.client.get_ports(is_audio=True, is_output=True) if substring in p.name]
        assert len(ports) == 2, ports
        for src, dst in zip(ports, self.ins):
            self.client.connect(src, dst)
        return ports

    def record(self, start: int, frames: int) -> None:
        """Arm the recording (returns at once; ``finished`` is set when it is complete)."""
        self.finished.clear()
        self.audio = np.zeros((frames, 2), np.float32)
        self.audio.fill(0.0)  # fault its pages in now, not in the callback (a 2 MB huge page every ~5 s)
        self.filled = 0
        # this process's JACK callbacks must not run a long garbage collection: freeze what exists
        # (no gc.collect() here: it would hold the GIL while the callbacks wait)
        gc.freeze()
        self.start = int(start)

    def wait(self, timeout: float) -> np.ndarray:
        assert self.finished.wait(timeout), f"recorded {self.filled} of {len(self.audio)} frames"
        return self.audio

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


REPLAYS = 5


def replays(attempts: int = REPLAYS, pause_s: float = 2.0):
    """Attempt numbers 1..``attempts`` for a real-time check that a stalled machine can spoil.

    This virtual machine stalls now and then, in stretches (bench/live.py's soak: a do-nothing
    real-time thread woke up to 19 ms late). A run the graph reported xruns for is played again;
    a clean run must pass. Before each replay it waits a growing pause, to leave the stretch."""
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            time.sleep(pause_s * (attempt - 1))
        yield attempt


def onsets(x: np.ndarray, gap: int, floor: float = 1e-6) -> np.ndarray:
    """Frames where sound starts after at least ``gap`` frames of silence (``|x| <= floor``)."""
    loud = np.flatnonzero(np.abs(x) > floor)
    if not len(loud):
        return loud
    return np.concatenate([loud[:1], loud[1:][np.diff(loud) > gap]])


def onset(x: np.ndarray, start: int, floor: float = 1e-6) -> int:
    """First frame at or after ``start`` where ``|x|`` exceeds ``floor`` (-1 if none)."""
    idx = np.flatnonzero(np.abs(x[start:]) > floor)
    return start + int(idx[0]) if len(idx) else -1


def default_stop_signals() -> None:
    """In a child before it runs: SIGHUP and SIGINT at their defaults, as a terminal starts a program
    (a harness run under `nohup`, or as a script's background job, would pass them on ignored, and
    the synth keeps a signal ignored at its start)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Synth:
    """`sing-synth --virtual` in a subprocess on a JACK server; a thread collects its stdout lines."""

    def __init__(self, preset, cache, env: dict, period: int = 256, *extra: str):
        cmd = [sys.executable, "-m", "sing_synth", "--virtual", "--midi-api", "jack", "--preset", str(preset),
               "--instrument", "0", "--blocksize", str(period), "--cache-dir", str(cache), *extra]
        self.t0 = time.perf_counter()
        self.ready_s = None  # seconds from launch to the `ready` line
        self.err = tempfile.TemporaryFile(mode="w+")  # a pipe nobody reads could fill up and block it
        self.proc = subprocess.Popen(cmd, env={"OMP_NUM_THREADS": "1", **env}, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, preexec_fn=default_stop_signals)
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.strip() == "ready":
                self.ready_s = time.perf_counter() - self.t0
                self.ready.set()

    def wait_ready(self, timeout: float) -> bool:
        return self.ready.wait(timeout)

    def stop(self) -> tuple[int, str]:
        """SIGTERM (the synth stops cleanly, exit 143: 128 + SIGTERM); the exit code and stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(10)  # the reader thread owns stdout: it collects the last lines
        self.err.seek(0)
        return self.proc.returncode, self.err.read()

    def info(self, prefix: str) -> str:
        return next((x.strip() for x in self.lines if x.startswith(prefix)), "")

    @property
    def xruns(self) -> int:
        """The xruns the synth reported on its way out (-1 before it stopped)."""
        line = self.info("stopped:")
        return int(line.split(" xruns")[0].rsplit(" ", 1)[-1]) if line else -1
