"""A private JACK server with the dummy backend: real-time-paced audio and real MIDI ports."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import pytest


class JackServer:
    def __init__(self, rate: int = 48000, period: int = 256):
        self.name = f"sing-test-{uuid.uuid4().hex[:8]}"
        self.rate, self.period = rate, period
        self.proc = None

    @property
    def env(self) -> dict:
        return {**os.environ, "JACK_DEFAULT_SERVER": self.name, "JACK_NO_AUDIO_RESERVATION": "1"}

    def start(self) -> JackServer:
        self.proc = subprocess.Popen(
            ["jackd", "-n", self.name, "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        ok = subprocess.run(["jack_wait", "-w", "-t", "10"], env=self.env, capture_output=True).returncode == 0
        if not ok:
            self.stop()
            raise RuntimeError("jackd did not start")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@pytest.fixture(scope="module")
def jack_server():
    if shutil.which("jackd") is None or shutil.which("jack_wait") is None:
        pytest.skip("jackd2 is not installed (.ci/run installs it)")
    server = JackServer().start()
    old = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = server.name
    time.sleep(0.2)
    yield server
    if old is None:
        os.environ.pop("JACK_DEFAULT_SERVER", None)
    else:
        os.environ["JACK_DEFAULT_SERVER"] = old
    server.stop()
