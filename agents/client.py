"""The agent client inside the server: the repository's copy of the countersign-client package (client/).

The package is what agents install (`pip install ./client`); the server does not install it. The
simulated agents (approvals/demo/fleet.py) drive the real HTTP API with it, as real agents do, so this
module loads it from the repository's client/ folder. The server's own webhook signing is
agents/signing.py, never this.
"""

from __future__ import annotations

import sys
from pathlib import Path

_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent / "client")
if _PACKAGE_ROOT not in sys.path:
    sys.path.insert(0, _PACKAGE_ROOT)  # the repository's copy, ahead of any installed version

from countersign_client import *  # noqa: E402, F403
from countersign_client import __all__  # noqa: E402, F401
