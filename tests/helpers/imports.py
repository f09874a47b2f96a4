"""The heavy-import probe: run the real `aetrack` command in a fresh interpreter and report which
heavy modules it imported by the time it exited."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass

from tests.helpers.processes import subprocess_env

HEAVY_MODULES = ("tensorflow", "keras", "mlflow", "matplotlib")

# `python -m aetrack ARGS`, plus an exit hook that prints the heavy modules then in sys.modules.
_PROBE = (
    "import atexit, json, runpy, sys\n"
    f"atexit.register(lambda: print('HEAVY ' + json.dumps(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))))\n"
    "sys.argv = ['aetrack'] + sys.argv[1:]\n"
    "runpy.run_module('aetrack', run_name='__main__', alter_sys=True)\n"
)


@dataclass
class Probed:
    out: subprocess.CompletedProcess
    seconds: float
    heavy: list[str]  # which of HEAVY_MODULES the process had imported when it exited


def run_with_import_probe(*args, uri: str | None = None, cwd=None, timeout: float = 180,
                          env_extra: dict[str, str] | None = None) -> Probed:
    """Run `aetrack ARGS` in a fresh interpreter; return its output, wall seconds and heavy imports."""
    env = subprocess_env(uri)
    env.update(env_extra or {})
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", _PROBE, *map(str, args)], capture_output=True, text=True,
                         timeout=timeout, cwd=cwd, env=env)
    seconds = time.monotonic() - started
    reports = [line[len("HEAVY "):] for line in out.stdout.splitlines() if line.startswith("HEAVY ")]
    assert len(reports) == 1, f"no import report (exit {out.returncode}):\n{out.stderr[-3000:]}"
    return Probed(out, seconds, json.loads(reports[0]))
