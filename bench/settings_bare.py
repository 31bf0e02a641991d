"""The production settings with one addition: the bench-only bare view.

api_bench.py runs uvicorn with this module, so the agent API and the bare
view share one server, one middleware stack and one environment; the view is
the only difference between the two.
"""

from __future__ import annotations

import os

from config.settings import *  # noqa: F403
from config.settings import DATABASES

ROOT_URLCONF = "bench.urls_bare"

# A what-if, never the production settings: BENCH_DB_POOL=<n> gives each
# server process a psycopg pool of up to n connections (Django 5.1+; needs
# the psycopg-pool package, which requirements.txt does not have). Under ASGI
# every request runs in a new thread, so without a pool each one connects.
if os.environ.get("BENCH_DB_POOL"):
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": int(os.environ["BENCH_DB_POOL"]),
        "timeout": 10,
    }
