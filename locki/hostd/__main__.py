"""`python -m locki.hostd`: the bridge daemon with the background reconcile loop."""

from __future__ import annotations

import sys

from locki.bridge import daemon
from locki.hostd import loop

if __name__ == "__main__":
    sys.exit(daemon.main(background=loop.run))
