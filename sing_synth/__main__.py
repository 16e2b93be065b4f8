"""``python -m sing_synth``: the ``sing-synth`` command."""

import sys

from .cli import main

sys.exit(main())
