"""Run private mosquitto and influxd processes on free ports, for the demo and the test suite.

Each service gets its own config file and data directory under a work directory, waits until it answers,
and can be stopped, killed and restarted on the same port (to simulate outages).
"""

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Self

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


class ServiceError(RuntimeError):
    """A local service could not be found or started."""


def find_binary(name: str, package: str) -> str:
    """Absolute path of ``name``; raise :class:`ServiceError` naming the Debian package when missing."""
    path = shutil.which(name, path=_SBIN_PATH)
    if path is None:
        raise ServiceError(
            f"'{name}' not found on PATH or in /usr/sbin: install the Debian package '{package}' "
            f"(sudo apt-get install -y {package})"
        )
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """True when nothing on 127.0.0.1 accepts connections on ``port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) != 0


class _Service:
    """A child process with a config file, a log file and a readiness probe."""

    name = "service"
    package = "service"
    startup_timeout_s = 30.0

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.log_path = workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _probe(self) -> None:
        """Return when the service answers; raise OSError or httpx.HTTPError otherwise."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start the process and wait until it answers."""
        if self.running:
            return self
        if not port_is_free(self.port):
            raise ServiceError(
                f"{self.name} cannot listen on {self.host}:{self.port}: the port is taken; "
                "stop it or choose another port"
            )
        with self.log_path.open("ab") as log:
            # Its own session: a terminal's Ctrl-C reaches the demo, which stops its services in order.
            self._proc = subprocess.Popen(self._argv(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            for attempt in Retrying(
                stop=stop_after_delay(self.startup_timeout_s),
                wait=wait_fixed(0.05),
                retry=retry_if_exception_type((OSError, httpx.HTTPError)),
                reraise=True,
            ):
                with attempt:
                    if self._proc.poll() is not None:
                        raise ServiceError(f"{self.name} exited with {self._proc.returncode}: {self.log_tail()}")
                    self._probe()
        except (OSError, httpx.HTTPError) as exc:
            self.kill()
            raise ServiceError(
                f"{self.name} did not answer on port {self.port} within {self.startup_timeout_s}s ({exc}); "
                f"log {self.log_path}: {self.log_tail()}"
            ) from exc
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop gracefully (SIGTERM), killing after ``timeout_s``."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        """Kill at once (SIGKILL), as a crash would."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()
        self._proc = None

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections stay open and hang, as with a server stuck or overloaded."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused process run on (SIGCONT)."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def restart(self) -> Self:
        """Stop and start again on the same port, keeping the data directory."""
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 20) -> str:
        """Last lines of the service's log, for error messages."""
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class Mosquitto(_Service):
    """A private mosquitto broker listening on 127.0.0.1 with anonymous access and on-disk persistence."""

    name = "mosquitto"
    package = "mosquitto"

    def __init__(
        self, workdir: Path, port: int | None = None, extra_config: str = "", config: str | None = None
    ) -> None:
        super().__init__(workdir, port)
        self.binary = find_binary("mosquitto", self.package)
        self.extra_config = extra_config
        self.config = config
        """A whole configuration to run instead of the private anonymous one (it must listen on :attr:`port`)."""
        self.config_path = workdir / "mosquitto.conf"

    @property
    def url(self) -> str:
        """``mqtt://host:port`` of this broker."""
        return f"mqtt://{self.host}:{self.port}"

    def _argv(self) -> list[str]:
        (self.workdir / "data").mkdir(exist_ok=True)
        if self.config is not None:
            self.config_path.write_text(self.config)
            return [self.binary, "-c", str(self.config_path)]
        self.config_path.write_text(
            "\n".join(
                [
                    f"listener {self.port} {self.host}",
                    "allow_anonymous true",
                    f"user {getpass.getuser()}",
                    "persistence true",
                    f"persistence_location {self.workdir / 'data'}/",
                    "autosave_interval 1",
                    "max_queued_messages 1000000",
                    "max_inflight_messages 1000",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "log_timestamp_format %Y-%m-%dT%H:%M:%S",
                    self.extra_config,
                    "",
                ]
            )
        )
        return [self.binary, "-c", str(self.config_path)]

    def _probe(self) -> None:
        with socket.create_connection((self.host, self.port), timeout=1.0):
            pass


class Influxd(_Service):
    """A private InfluxDB 1.x server (v1 ``/write`` and ``/query``) with its data under ``workdir``."""

    name = "influxd"
    package = "influxdb"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir, port)
        self.binary = find_binary("influxd", self.package)
        self.rpc_port = free_port()
        self.config_path = workdir / "influxdb.conf"

    @property
    def url(self) -> str:
        """Base HTTP URL of this server."""
        return f"http://{self.host}:{self.port}"

    def _argv(self) -> list[str]:
        data = self.workdir / "data"
        self.config_path.write_text(
            f"""reporting-enabled = false
bind-address = "{self.host}:{self.rpc_port}"
[meta]
  dir = "{data / "meta"}"
[data]
  dir = "{data / "data"}"
  wal-dir = "{data / "wal"}"
  query-log-enabled = false
  cache-snapshot-write-cold-duration = "1m"
[monitor]
  store-enabled = false
[http]
  bind-address = "{self.host}:{self.port}"
  log-enabled = false
  max-body-size = 0
[logging]
  level = "warn"
[continuous_queries]
  enabled = false
"""
        )
        return [self.binary, "-config", str(self.config_path)]

    def _probe(self) -> None:
        httpx.get(f"{self.url}/ping", timeout=1.0).raise_for_status()


class Postgres(_Service):
    """A private PostgreSQL server (Debian package ``postgresql``) on 127.0.0.1, trust auth, one database.

    PostgreSQL refuses to run as root: under root the cluster lives in its own directory owned by the ``postgres``
    system user (created by the Debian package) and the server runs as that user.
    """

    name = "postgres"
    package = "postgresql"
    user = "lockerfleet"
    database = "lockerfleet"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir, port)
        self.bindir = Path(_postgres_bindir(self.package))
        self._as_root = os.geteuid() == 0
        self.cluster = Path(tempfile.mkdtemp(prefix="lockerfleet-pg-")) if self._as_root else workdir / "cluster"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the database (psycopg 3 driver)."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{self.database}"

    def _run_as(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if self._as_root else []

    def _argv(self) -> list[str]:
        data = self.cluster / "data"
        if not (data / "PG_VERSION").exists():
            if self._as_root:
                shutil.chown(self.cluster, "postgres", "postgres")
            subprocess.run(
                [*self._run_as(), str(self.bindir / "initdb"), "-D", str(data), "-U", self.user, "--auth=trust"],
                check=True,
                capture_output=True,
            )
            initialized = True
        else:
            initialized = False
        self._create_db = initialized
        return [
            *self._run_as(),
            str(self.bindir / "postgres"),
            "-D",
            str(data),
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-k",
            str(self.cluster),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]

    def _probe(self) -> None:
        ready = subprocess.run(
            [str(self.bindir / "pg_isready"), "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", "postgres"],
            capture_output=True,
            check=False,
        )
        if ready.returncode != 0:
            raise ConnectionRefusedError(f"pg_isready: {ready.stdout.decode().strip()}")
        if self._create_db:
            subprocess.run(
                [str(self.bindir / "createdb"), "-h", self.host, "-p", str(self.port), "-U", self.user, self.database],
                check=True,
                capture_output=True,
            )
            self._create_db = False

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server (fast shutdown) and wait for it."""
        self._pg_ctl_stop("fast", timeout_s)

    def kill(self) -> None:
        """Stop at once, as a crash would (immediate shutdown: no checkpoint)."""
        self._pg_ctl_stop("immediate", 10.0)

    def _pg_ctl_stop(self, mode: str, timeout_s: float) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            data = str(self.cluster / "data")
            subprocess.run(
                [
                    *self._run_as(),
                    str(self.bindir / "pg_ctl"),
                    "stop",
                    "-D",
                    data,
                    "-m",
                    mode,
                    "-t",
                    str(int(timeout_s)),
                ],
                capture_output=True,
                check=False,
            )
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def remove(self) -> None:
        """Stop and delete the cluster."""
        self.stop()
        shutil.rmtree(self.cluster, ignore_errors=True)


def _postgres_bindir(package: str) -> str:
    """Debian keeps the server binaries under /usr/lib/postgresql/<major>/bin; take the newest."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not candidates:
        raise ServiceError(
            f"PostgreSQL server binaries not found under /usr/lib/postgresql: install the Debian package "
            f"'{package}' (sudo apt-get install -y {package})"
        )
    return str(candidates[-1].parent)
