"""The heavy-import probe: run the real `aetrack` command in a fresh interpreter and report which
heavy modules it imported by the time it exited; or run a table of error cases one after another
in one fresh interpreter, reporting the heavy modules loaded after each."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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


# Each case through the CLI's `main` (tests.helpers.processes.aetrack_in_process) in its own cwd
# and store; what sys.modules holds after each. Modules only accumulate, so the first case that
# loads a heavy module is the first one reported with it.
_CASES_PROBE = (
    "import json, os, sys, time\n"
    "from tests.helpers.processes import aetrack_in_process\n"
    "results = []\n"
    "for case in json.loads(sys.stdin.read()):\n"
    "    os.environ['MLFLOW_TRACKING_URI'] = case['uri']\n"
    "    started = time.monotonic()\n"
    "    out = aetrack_in_process(*case['args'], cwd=case['cwd'])\n"
    "    results.append({'code': out.returncode, 'stdout': out.stdout, 'stderr': out.stderr,\n"
    "                    'seconds': time.monotonic() - started,\n"
    f"                    'heavy': sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)}})\n"
    "print('CASES ' + json.dumps(results))\n"
)


def run_cases_with_import_probe(cases: list[tuple[list[str], Path, str]], timeout: float = 300) -> list[Probed]:
    """`aetrack ARGS` for each (args, cwd, tracking URI), one after another in ONE fresh interpreter
    (one start-up for a whole table of error cases); per case its output, seconds and the heavy
    modules loaded so far."""
    payload = json.dumps([{"args": [str(a) for a in args], "cwd": str(cwd), "uri": uri} for args, cwd, uri in cases])
    out = subprocess.run([sys.executable, "-c", _CASES_PROBE], input=payload, capture_output=True, text=True,
                         timeout=timeout, env=subprocess_env())
    reports = [line[len("CASES "):] for line in out.stdout.splitlines() if line.startswith("CASES ")]
    assert out.returncode == 0 and len(reports) == 1, f"no case report (exit {out.returncode}):\n{out.stderr[-3000:]}"
    return [Probed(subprocess.CompletedProcess(["aetrack", *args], r["code"], r["stdout"], r["stderr"]),
                   r["seconds"], r["heavy"]) for (args, _, _), r in zip(cases, json.loads(reports[0]))]
