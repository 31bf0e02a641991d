"""A fresh virtualenv with the countersign-client package installed from the repository (client/), as an
agent's developer would install it: no Django, nothing of the server, only the package and what it needs
(pip may fetch httpx, and an extra's framework, from the package index).

One per test run, made on first use (about 10 s, plus the extra's download) and removed at exit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.agent_side import CLIENT_PACKAGE


class ClientVenv:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.python = root / "bin" / "python"
        self.extras: set[str] = set()

    def install(self, extra: str = "") -> None:
        """pip install the package from the repository (with `extra`), once per run."""
        if extra in self.extras:
            return
        source = self.root / "source"  # a copy: pip's build writes next to the sources, never in the repository
        if not source.exists():
            shutil.copytree(CLIENT_PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "dist"))
        spec = f"{source}[{extra}]" if extra else str(source)
        subprocess.run(  # noqa: S603  (our own command line)
            [str(self.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", spec, *PINS[extra]],
            check=True,
            timeout=900,
        )
        self.extras.add(extra)

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment for a program of this virtualenv: no PYTHONPATH, no Django settings."""
        keep = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
        return {**keep, "PYTHONNOUSERSITE": "1", "OPENAI_AGENTS_DISABLE_TRACING": "1", **extra}

    def has(self, module: str) -> bool:
        probe = subprocess.run(  # noqa: S603  (our own command line)
            [str(self.python), "-c", f"import {module}"], capture_output=True, env=self.env(), cwd=self.root
        )
        return probe.returncode == 0


# The versions the suite runs with (the package itself accepts ranges): httpx as the server pins it, and
# openai-agents, which cannot live in requirements-test.txt (it needs websockets<17; the server pins 17).
PINS = {"": ["httpx==0.28.1"], "openai-agents": ["openai-agents==0.24.0"]}

_made: list[ClientVenv] = []


def client_venv() -> ClientVenv:
    """The run's virtualenv with the core package installed; skips the test, saying why, only when this
    machine cannot make a virtualenv at all."""
    if _made:
        return _made[0]
    root = Path(tempfile.mkdtemp(prefix="countersign-client-venv-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    made = subprocess.run([sys.executable, "-m", "venv", str(root)], capture_output=True, text=True)  # noqa: S603
    if made.returncode != 0 or not (root / "bin" / "python").exists():
        pytest.skip(f"cannot create a virtualenv here ({sys.executable} -m venv): {made.stderr.strip()[:300]}")
    venv = ClientVenv(root)
    venv.install()
    _made.append(venv)
    return venv
