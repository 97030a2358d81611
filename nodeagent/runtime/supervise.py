"""The supervisor of one process-runtime container: `python -m nodeagent.runtime.supervise DIR -- CMD...`.

Started by runtime/process.py in a session of its own; it applies the
container's limits (rlimits) and user, starts CMD with the container's output
going to DIR/log, forwards SIGTERM and SIGINT to it, and writes its exit code
to DIR/exit (128 + the signal number when a signal ended it) — so that the
exit code survives a restart of the agent, which is not this process's parent
any more by then. SIGKILL of the process group ends both without an exit file;
the runtime then reports 137, as a kill would.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    state = Path(argv[0])
    cmd = argv[argv.index("--") + 1:]
    spec = json.loads((state / "spec.json").read_text())

    def limits() -> None:
        if spec.get("memory_limit"):
            resource.setrlimit(resource.RLIMIT_AS, (spec["memory_limit"], spec["memory_limit"]))
        if spec.get("run_as_group") is not None:
            os.setgid(int(spec["run_as_group"]))
        if spec.get("run_as_user") is not None:
            os.setuid(int(spec["run_as_user"]))

    with open(state / "log", "ab", buffering=0) as log:
        try:
            child = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=spec.get("env") or {},
                                     cwd=spec.get("cwd") or None, preexec_fn=limits)
        except OSError as exc:
            log.write(f"cannot start {cmd[:1]}: {exc}\n".encode())
            (state / "exit").write_text("127")
            return 127
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda s, _f: child.send_signal(s))
        code = child.wait()
    (state / "exit").write_text(str(128 - code if code < 0 else code))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
