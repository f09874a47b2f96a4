"""Child processes: environment, the `aetrack` CLI runner (in a child, or in this process for
suites of error cases), free ports, waiting, stopping by pid."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import closing
from pathlib import Path

from deploy.stack import free_port  # noqa: F401  (the one definition; tests import it from here)

REPO = Path(__file__).resolve().parents[2]


def subprocess_env(tracking_uri: str | None = None) -> dict[str, str]:
    """Environment for child processes: this interpreter's bin dir first, quiet TensorFlow."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["MPLBACKEND"] = "Agg"
    env.pop("MLFLOW_RUN_ID", None)
    # mlflow.set_experiment() in an earlier in-process test exports this; `mlflow run` children
    # then refuse --experiment-name ("Specify only one of ...").
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
        env["MLFLOW_REGISTRY_URI"] = tracking_uri  # register where it tracks, whatever an earlier test exported
    return env


def run_aetrack(*args, uri: str | None = None, cwd=None, timeout: float = 240) -> subprocess.CompletedProcess:
    """The real `aetrack` command in a child process (`python -m aetrack ...`), output captured."""
    return subprocess.run([sys.executable, "-m", "aetrack", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env(uri), cwd=cwd)


def aetrack_in_process(*args, cwd=None) -> subprocess.CompletedProcess:
    """`aetrack ARGS` through the CLI's own `main` in this process: the same parsing, checks, error
    lines and exit codes as the command, without a new interpreter loading TensorFlow and MLflow
    again. For tables of error cases; each such test also runs one case in a real child process.
    The store is this process's (a fixture's `tracking` or entered session store)."""
    from aetrack.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd or os.getcwd()), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return subprocess.CompletedProcess(["aetrack", *map(str, args)], code, stdout.getvalue(), stderr.getvalue())


def run_concurrently(commands: list[list[str]], env: dict[str, str], cwd=None,
                     timeout: float = 400) -> list[subprocess.CompletedProcess]:
    """Start every command at once and wait for all; output captured, and each result's `pid` set.
    Any still running when this fails (a timeout) are killed, so no child outlives the test."""
    children = [subprocess.Popen([str(a) for a in command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=env, cwd=cwd) for command in commands]
    try:
        outputs = [child.communicate(timeout=timeout) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    results = []
    for child, (out, err) in zip(children, outputs):
        result = subprocess.CompletedProcess(child.args, child.returncode, out, err)
        result.pid = child.pid
        results.append(result)
    return results


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(predicate, timeout: float, what: str, poll: float = 0.5):
    """Poll `predicate` until it returns something truthy (returned), or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_for_http(url: str, child: subprocess.Popen, timeout: float, log=None) -> float:
    """Wait until `url` answers 200 (seconds it took); fail early if `child` exits meanwhile."""
    started = time.monotonic()

    def answers():
        if child.poll() is not None:
            raise AssertionError(f"server exited {child.returncode}: {read_log(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    wait_for(answers, timeout, f"{url} to answer ({read_log(log)})" if log else f"{url} to answer")
    return time.monotonic() - started


def read_log(log) -> str:
    """The last 3000 characters of an open log file the child writes to."""
    if log is None:
        return ""
    log.flush()
    log.seek(0)
    return log.read()[-3000:]


def logged_loss_points(db: Path) -> int:
    """`loss` points in the store, read with plain sqlite3 in read-only mode.

    MlflowClient would run schema migrations on a database the child is still creating; a
    read-only query cannot interfere and just finds nothing until the tables exist.
    """
    if not db.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
            return conn.execute("SELECT COUNT(*) FROM metrics WHERE key = 'loss'").fetchone()[0]
    except sqlite3.OperationalError:  # no tables yet, or locked for a moment
        return 0


def wait_for_first_epoch(child: subprocess.Popen, db: Path, what: str, timeout: float = 240) -> None:
    """Wait (bounded) until the child has logged an epoch's loss; fail if it exits first."""

    def first_epoch_logged():
        if child.poll() is not None:
            raise AssertionError(f"{what} ended early: {child.stderr.read()[-2000:]}")
        return logged_loss_points(db) > 0

    wait_for(first_epoch_logged, timeout, "the first epoch to be logged")


def stop_group(child: subprocess.Popen, grace: float = 30) -> None:
    """Stop a child started with start_new_session=True, and everything in its process group, by pid:
    SIGTERM, then SIGKILL after `grace` seconds."""
    try:
        os.killpg(child.pid, signal.SIGTERM)  # the group outlives its leader while workers remain
    except ProcessLookupError:
        child.wait(timeout=grace)
        return
    try:
        child.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=grace)
