"""The production settings with one addition: the bench-only bare view.

api_bench.py runs uvicorn with this module, so the agent API and the bare
view share one server, one middleware stack and one environment; the view is
the only difference between the two.
"""

from __future__ import annotations

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls_bare"
