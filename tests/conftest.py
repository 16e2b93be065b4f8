"""Test-session settings.

torch runs on one intra-op thread in the tests (and in the subprocesses they start): on a
2-core machine shared with a JACK server, recording clients and a second torch process, a
second thread that waits for a descheduled peer makes small models 10-100x slower.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
