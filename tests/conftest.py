"""Test-session settings and the fixtures every module may use.

torch runs on one intra-op thread in the tests (and in the subprocesses they start): on a
2-core machine shared with a JACK server, recording clients and a second torch process, a
second thread that waits for a descheduled peer makes small models 10-100x slower.
"""

import os
import time

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from sing_synth.testing.jack_server import JackServer  # noqa: E402


@pytest.fixture(autouse=True)
def note_cache_dir(tmp_path_factory, monkeypatch):
    """Each test has a note cache of its own (renders use the disk cache by default): never the
    user's, and no test sees another's notes. Subprocesses inherit it through the environment."""
    path = tmp_path_factory.mktemp("note-cache")
    monkeypatch.setenv("SING_SYNTH_CACHE", str(path))
    return path


@pytest.fixture(scope="module")
def jack_server():
    """A private JACK dummy server for the module; JACK_DEFAULT_SERVER points every client at it."""
    if not JackServer.available():
        pytest.skip("jackd2 is not installed (.ci/run installs it)")
    server = JackServer(realtime=True).start()  # like a musician's setup; without -R where not allowed
    old = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = server.name
    time.sleep(0.2)
    yield server
    if old is None:
        os.environ.pop("JACK_DEFAULT_SERVER", None)
    else:
        os.environ["JACK_DEFAULT_SERVER"] = old
    server.stop()
