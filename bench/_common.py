"""Helpers shared by the benchmarks in bench/: embedded servers in a temp dir,
fresh databases, the payload every benchmark writes, percentiles, CPU
accounting per process, machine facts, the event loop, child processes of
ours stopped by PID, pacing, SIGTERM handling, and the flags and main() every
benchmark shares.

Benchmarks are not tests: nothing here asserts; everything here measures or
describes the machine the figures came from.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from eventplane.embedded import EmbeddedNats, EmbeddedPostgres
from eventplane.embedded.lifetime import die_with_parent

_db_ids = itertools.count(1)


# ---------------------------------------------------------------- event loop

def choose_loop(use_uvloop: bool = True) -> tuple[Callable[[Coroutine[Any, Any, Any]], Any], str]:
    """uvloop when it is importable (and wanted), else asyncio's default loop: a runner and its name."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run, f"uvloop {uvloop.__version__}"
    return asyncio.run, "asyncio default loop"


# ---------------------------------------------------------------- servers

@dataclass
class Servers:
    postgres: EmbeddedPostgres
    nats: EmbeddedNats
    data_dir: Path

    @property
    def admin_url(self) -> str:
        return self.postgres.admin_url()

    @property
    def nats_url(self) -> str:
        return self.nats.url

    def database_url(self, name: str) -> str:
        return self.postgres.url.replace(f"/{self.postgres.database}?", f"/{name}?")


@contextlib.contextmanager
def embedded_servers(*, parent: str | None = None, keep: bool = False) -> Iterator[Servers]:
    """PostgreSQL and NATS in a fresh temp dir; both stopped (and the dir removed) on any exit."""
    data_dir = Path(tempfile.mkdtemp(prefix="eventplane-bench-", dir=parent))
    pg = EmbeddedPostgres(data_dir, database="postgres")
    nats = EmbeddedNats(data_dir)
    try:
        pg.start()
        nats.start()
        yield Servers(pg, nats, data_dir)
    finally:
        try:
            nats.stop()
        finally:
            pg.stop()
            if not keep:
                shutil.rmtree(data_dir, ignore_errors=True)


async def fresh_database(servers: Servers, prefix: str) -> str:
    """CREATE DATABASE via the admin connection; the schema is left to whoever opens it."""
    name = f"{prefix}_{os.getpid()}_{next(_db_ids)}"
    conn = await asyncpg.connect(servers.admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return servers.database_url(name)


async def checkpoint(servers: Servers) -> None:
    """Flush the previous scenario's dirty pages now rather than in the middle of the next one."""
    conn = await asyncpg.connect(servers.admin_url)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


# ---------------------------------------------------------------- payload

NAMESPACE = "bench"
_DATA_VALUE = "x" * 56


def configmap(name: str, *, writer: int, seq: int, uid: str | None = None,
              namespace: str = NAMESPACE) -> dict[str, Any]:
    """A ConfigMap-like object of about 500 bytes once msgpack-encoded."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or str(uuid.uuid4()),
            "labels": {"app": "bench", "tier": "backend", "writer": str(writer),
                       "app.kubernetes.io/managed-by": "eventplane-bench"},
            "annotations": {"bench.eventplane.io/seq": str(seq)},
        },
        "data": {f"key-{i}": _DATA_VALUE for i in range(5)},
    }


# ---------------------------------------------------------------- statistics

def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence; nan when empty."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def summarize_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p99/max of latencies given in seconds, reported in milliseconds."""
    s = sorted(seconds)
    return {"n": len(s), "p50_ms": percentile(s, 50) * 1e3, "p99_ms": percentile(s, 99) * 1e3,
            "max_ms": (s[-1] * 1e3) if s else float("nan")}


# ---------------------------------------------------------------- CPU accounting

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    """utime + stime of one process in seconds; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # fields 14 and 15 of stat(5)


def _tree_cpu(root: int | None) -> float:
    """CPU of `root` and its direct children (a postmaster and its backends)."""
    if root is None:
        return 0.0
    total = _proc_cpu(root)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == root:
            total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def _machine_cpu() -> tuple[float, float]:
    """Seconds of CPU the whole machine ran anything, and seconds the hypervisor stole from it."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq) / _TICK, steal / _TICK


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads) in seconds, from /proc/PID/stat; 0 when it is gone."""
    return _proc_cpu(pid)


def sched_seconds(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of a process's main thread, from
    /proc/PID/schedstat; (0, 0) when it is gone. On a busy machine the second says how much more CPU
    the thread would have used: an event loop that is busy + waiting ≈ 1 core is CPU-bound."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            on_cpu, waiting = f.read().split()[:2]
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return 0.0, 0.0
    return int(on_cpu) / 1e9, int(waiting) / 1e9


@dataclass
class CpuSample:
    wall: float
    bench: float
    postgres: float
    nats: float
    machine_busy: float
    steal: float
    extra: dict[str, float] = field(default_factory=dict)


class CpuMeter:
    """Cores used by this process, PostgreSQL (postmaster + backends), nats-server and the whole
    machine (anyone's processes, without steal) over a window, and cores stolen by the hypervisor.
    `extra` names more processes to account for by PID (e.g. an API server run as a child process);
    each appears in the result under its name.

    Backends that exit inside the window take their CPU with them, so take the
    end sample before closing pools.
    """

    def __init__(self, servers: Servers, extra: dict[str, int] | None = None) -> None:
        self._servers = servers
        self._extra = dict(extra or {})
        self._start: CpuSample | None = None

    def _sample(self) -> CpuSample:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return CpuSample(time.perf_counter(), ru.ru_utime + ru.ru_stime, _tree_cpu(self._servers.postgres.pid),
                         _proc_cpu(self._servers.nats.pid or 0), *_machine_cpu(),
                         extra={name: _proc_cpu(pid) for name, pid in self._extra.items()})

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> dict[str, float]:
        """Average cores busy in each process since start()."""
        if self._start is None:
            raise RuntimeError("CpuMeter.stop() before start()")
        end, s = self._sample(), self._start
        wall = max(end.wall - s.wall, 1e-9)
        return {"bench": (end.bench - s.bench) / wall, "postgres": (end.postgres - s.postgres) / wall,
                "nats": (end.nats - s.nats) / wall, "machine": (end.machine_busy - s.machine_busy) / wall,
                "steal": (end.steal - s.steal) / wall,
                **{name: (end.extra[name] - s.extra[name]) / wall for name in self._extra}}


# ---------------------------------------------------------------- machine facts

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _filesystem_of(path: Path) -> str:
    best, fstype = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                _dev, mnt, typ = line.split()[:3]
                if str(path).startswith(mnt) and len(mnt) > len(best):
                    best, fstype = mnt, typ
    except OSError:
        pass
    return fstype


def fdatasync_us(directory: Path, rounds: int = 200) -> float:
    """Median microseconds of one 8 KiB write + fdatasync in `directory`: the floor under one commit."""
    path = directory / "fsync-probe"
    block = os.urandom(8192)
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for i in range(rounds):
            t0 = time.perf_counter()
            os.pwrite(fd, block, (i % 16) * 8192)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return percentile(sorted(times), 50) * 1e6


async def machine_facts(servers: Servers, loop_name: str) -> dict[str, Any]:
    conn = await asyncpg.connect(servers.admin_url)
    try:
        pg = {name: await conn.fetchval(f"SHOW {name}") for name in (
            "server_version", "fsync", "synchronous_commit", "wal_sync_method", "full_page_writes",
            "shared_buffers", "commit_delay")}
    finally:
        await conn.close()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "loop": loop_name,
        "postgres": pg,
        "data_dir": str(servers.data_dir),
        "filesystem": _filesystem_of(servers.data_dir),
        "fdatasync_us_p50": fdatasync_us(servers.data_dir),
    }


# ---------------------------------------------------------------- child processes

def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the usual small race applies)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ChildProcess:
    """A command of ours run as a child process (e.g. `python -m eventplane.cli.server apiserver …`),
    its stdout and stderr in a log file, stopped by its PID.

    The child runs in its own session (a Ctrl-C in the terminal reaches only the
    benchmark, which then stops it in order) and gets SIGTERM from the kernel
    should the benchmark die without cleaning up (PR_SET_PDEATHSIG).
    """

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self._process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"{self.name} was not started")
        return self._process.pid

    def start(self) -> ChildProcess:
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=self.env, start_new_session=True,
                                             preexec_fn=die_with_parent)
        return self

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def cpu_seconds(self) -> float:
        return _proc_cpu(self.pid) if self._process is not None else 0.0

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM to the PID, SIGKILL after `timeout`; the exit status (None if never started)."""
        p = self._process
        if p is None:
            return None
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGTERM)
                p.wait(timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
        return p.returncode


@contextlib.contextmanager
def child_processes() -> Iterator[list[ChildProcess]]:
    """A list to start children into; on any exit every one is stopped by PID, the last started first."""
    children: list[ChildProcess] = []
    try:
        yield children
    finally:
        # A second SIGTERM must not cut this short and leave children running.
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, signal.SIG_IGN) if main_thread else None
        try:
            for child in reversed(children):
                child.stop()
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------- pacing and running

async def paced(rate: float, seconds: float, workers: int, op: Callable[[int, int], Awaitable[None]]) -> dict:
    """Operation k is due at t0 + k/rate; worker w does k = w, w+W, w+2W… each awaited before the next.

    A worker that falls behind fires at once, so a slow path shows as a lower
    achieved rate and a larger `behind_ms`, not as a silently easier test.
    """
    total = max(1, int(rate * seconds))
    t0 = time.perf_counter() + 0.005
    behind = [0.0]

    async def worker(w: int) -> None:
        for k in range(w, total, workers):
            delay = t0 + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                behind[0] = max(behind[0], -delay)
            await op(w, k)

    await asyncio.gather(*(worker(w) for w in range(workers)))
    elapsed = time.perf_counter() - t0
    return {"ops": total, "seconds": elapsed, "achieved_per_s": total / elapsed, "behind_ms": behind[0] * 1e3}


def no_nan(value: Any) -> Any:
    """JSON has no NaN: an empty percentile becomes null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [no_nan(v) for v in value]
    return value


async def cancelled_by_sigterm(main: Awaitable[Any]) -> Any:
    """Inside the loop SIGTERM cancels the run (its finally blocks close pools, tasks and children)
    instead of raising out of whichever callback happens to be running."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    previous = signal.getsignal(signal.SIGTERM)
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await main
    finally:
        loop.remove_signal_handler(signal.SIGTERM)  # leaves SIG_DFL behind: put the caller's handler back
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------- flags and main()

def parser(doc: str) -> argparse.ArgumentParser:
    """A benchmark's argument parser: its module docstring's first paragraph, defaults shown."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_common_args(p: argparse.ArgumentParser, *, server_log_level: str | None = "warning",
                    server_log_help: str = "--log-level of the child processes (their logs go to files in the "
                                           "temp dir)") -> None:
    """--server-log-level (unless `server_log_level` is None: no child processes), --json, --no-uvloop,
    --dir and --keep: the flags run_main() reads."""
    if server_log_level is not None:
        p.add_argument("--server-log-level", default=server_log_level, choices=("debug", "info", "warning", "error"),
                       help=server_log_help)
    p.add_argument("--json", action="store_true", help="print JSON on stdout instead of the table")
    p.add_argument("--no-uvloop", action="store_true", help="use asyncio's default loop even if uvloop is there")
    p.add_argument("--dir", default=None, help="parent directory of the temp data dir (default: the system's)")
    p.add_argument("--keep", action="store_true", help="keep the temp data dir (server logs) after the run")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _exit_on_sigterm(*_: object) -> None:
    sys.exit(128 + signal.SIGTERM)  # unwinds through the finally blocks that stop the processes and servers


def run_main(args: argparse.Namespace, run_all: Callable[..., Coroutine[Any, Any, dict[str, Any]]],
             render: Callable[[dict[str, Any]], str], *, children: bool = True, as_json: bool | None = None,
             profile: int = 0) -> int:
    """A benchmark's main(): SIGTERM exits (while the servers start and stop) or cancels the run (inside
    the loop); the loop --no-uvloop chooses; embedded servers in a temp dir under --dir (kept with --keep)
    and, with `children`, a list of child processes stopped by PID before the servers; then
    `run_all(servers, children, args, loop name)` (without `children`: `run_all(servers, args, loop name)`)
    → the result, which gets total_seconds and is printed as JSON (--json, or `as_json`) or as render()'s
    table. `profile` > 0 runs this process under cProfile and prints its N most expensive functions to
    stderr. Returns the exit status."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    runner, loop_name = choose_loop(not args.no_uvloop)
    started = time.perf_counter()
    # The servers outlive the loop, so that whatever the loop leaves running is cancelled (at the loop's
    # shutdown) while its servers are still there; children are stopped before the servers they use.
    with embedded_servers(parent=args.dir, keep=args.keep) as servers, \
            (child_processes() if children else contextlib.nullcontext()) as kids:
        _log(f"servers up in {servers.data_dir} ({time.perf_counter() - started:.1f} s)")
        profiler = None
        if profile:
            import cProfile
            profiler = cProfile.Profile()
            profiler.enable()
        try:
            run = run_all(servers, kids, args, loop_name) if children else run_all(servers, args, loop_name)
            out = runner(cancelled_by_sigterm(run))
        except asyncio.CancelledError:
            _log("stopped by SIGTERM")
            return 128 + signal.SIGTERM
    if profiler is not None:
        import pstats
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(profile)
    out["total_seconds"] = time.perf_counter() - started
    if args.json if as_json is None else as_json:
        print(json.dumps(no_nan(out), indent=2, default=str))
    else:
        print(render(out))
        print(f"\n(total {out['total_seconds']:.0f} s)")
    return 0
