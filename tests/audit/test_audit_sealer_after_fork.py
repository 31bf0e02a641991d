"""The audit sealer after fork: the parent's sealer thread does not survive
in a forked child (a prefork worker's process), so the child must start its
own, or what it writes waits for the periodic sweep.

The fork happens in a process of its own, so no thread or fork is left in
the test run."""

from __future__ import annotations

import os
import subprocess
import sys

from django.conf import settings

FORK_AFTER_SEALING = r"""
import os, sys, threading
import django
django.setup()
from django.conf import settings
from audit import chain

settings.AUDIT_SEALING = "background"
sealed = threading.Event()
chain.seal_all = lambda: sealed.set() or 0  # the sealer's pass, without a database
chain.request_seal()
if not sealed.wait(10):
    sys.exit("the parent's sealer never ran")
child = os.fork()
if child == 0:
    sealed.clear()
    chain.request_seal()
    os._exit(0 if sealed.wait(10) else 3)
sys.exit(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
"""


def test_a_child_forked_after_its_parent_sealed_starts_a_sealer_of_its_own():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run(  # noqa: S603  (our own script)
        [sys.executable, "-c", FORK_AFTER_SEALING],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, f"exit {result.returncode}: nothing sealed in the child\n{result.stderr}"
