"""The node agent's pure parts: the pod phase and conditions from container records (kubelet's
getPhase), $(VAR) expansion, the backoff's wording, and a ContainerConfig as Docker's create body."""
from __future__ import annotations

import pytest

from nodeagent.containers import expand
from nodeagent.runtime import ContainerConfig, ContainerRecord, Mount
from nodeagent.runtime.docker import docker_config
from nodeagent.status import Observed, pod_status
from nodeagent.worker import go_duration

NOW = "2026-01-01T00:00:10Z"


def rec(name: str, state: str, *, role: str = "app", code: int | None = None, restarts: int = 0,
        oom: bool = False) -> ContainerRecord:
    return ContainerRecord(id=f"{name}{restarts}", pod_uid="u", pod_namespace="ns", pod_name="p", name=name, role=role,
                           restart_count=restarts, image="img", state=state, exit_code=code, oom_killed=oom,
                           started_at="2026-01-01T00:00:01Z",
                           finished_at="2026-01-01T00:00:02Z" if state == "exited" else None)


SANDBOX = ContainerRecord(id="s", pod_uid="u", pod_namespace="ns", pod_name="p", name="", role="infra",
                          restart_count=0, image="pause", state="running", ip="172.17.0.9")


def pod(policy: str = "Always", containers=("a",), init=()) -> dict:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"restartPolicy": policy, "containers": [{"name": c, "image": "img"} for c in containers],
                     "initContainers": [{"name": c, "image": "img"} for c in init]}}


CASES = [
    # name, pod, records, waiting, phase, ready
    ("nothing yet", pod(), [], {}, "Pending", "False"),
    ("running", pod(), [rec("a", "running")], {}, "Running", "True"),
    ("crash loop", pod(), [rec("a", "exited", code=1)], {"a": ("CrashLoopBackOff", "back-off")}, "Running", "False"),
    ("completed, Never", pod("Never"), [rec("a", "exited", code=0)], {}, "Succeeded", "False"),
    ("failed, Never", pod("Never"), [rec("a", "exited", code=2)], {}, "Failed", "False"),
    ("failed, OnFailure, restarting", pod("OnFailure"), [rec("a", "exited", code=2)],
     {"a": ("CrashLoopBackOff", "")}, "Running", "False"),
    ("one of two running", pod(containers=("a", "b")), [rec("a", "running")], {}, "Pending", "False"),
    ("init running", pod(init=("i",)), [rec("i", "running", role="init")], {}, "Pending", "False"),
    ("init done, app running", pod(init=("i",)),
     [rec("i", "exited", role="init", code=0), rec("a", "running")], {}, "Running", "True"),
    ("init failed, Never", pod("Never", init=("i",)), [rec("i", "exited", role="init", code=1)], {}, "Failed",
     "False"),
]


@pytest.mark.parametrize("name,p,records,waiting,phase,ready", CASES, ids=[c[0] for c in CASES])
def test_phase_and_ready(name, p, records, waiting, phase, ready):
    status = pod_status(p, Observed([SANDBOX, *records], "10.0.0.1", NOW, waiting=waiting))
    assert status["phase"] == phase
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == ready
    assert status["podIP"] == "172.17.0.9" and status["hostIP"] == "10.0.0.1"


def test_container_states_and_reasons():
    p = pod()
    status = pod_status(p, Observed([SANDBOX, rec("a", "exited", code=137, oom=True, restarts=0),
                                     rec("a", "running", restarts=1)], "10.0.0.1", NOW))
    [s] = status["containerStatuses"]
    assert s["restartCount"] == 1 and "running" in s["state"]
    assert s["lastState"]["terminated"]["reason"] == "OOMKilled"
    waiting = pod_status(p, Observed([SANDBOX], "10.0.0.1", NOW, waiting={"a": ("ErrImagePull", "no registry")}))
    assert waiting["containerStatuses"][0]["state"] == {"waiting": {"reason": "ErrImagePull", "message": "no registry"}}


def test_transition_times_are_kept_while_a_condition_holds():
    p = pod()
    first = pod_status(p, Observed([SANDBOX, rec("a", "running")], "10.0.0.1", NOW))
    p["status"] = first
    later = pod_status(p, Observed([SANDBOX, rec("a", "running")], "10.0.0.1", "2026-01-01T00:05:00Z"))
    assert later == first


@pytest.mark.parametrize("text,env,out", [
    ("$(A)-$(B)", {"A": "1"}, "1-$(B)"),
    ("$$(A)", {"A": "1"}, "$(A)"),
    ("plain", {}, "plain"),
])
def test_expand(text, env, out):
    assert expand(text, env) == out


@pytest.mark.parametrize("seconds,text", [(10, "10s"), (40, "40s"), (80, "1m20s"), (300, "5m0s")])
def test_backoff_wording(seconds, text):
    assert go_duration(seconds) == text


def test_docker_config_of_a_container():
    cfg = ContainerConfig(name="a", role="app", image="img", command=("sh",), args=("-c", "x"), env=(("K", "V"),),
                          mounts=(Mount("/h", "/c", True),), memory_limit=64 << 20, cpu_limit_milli=500,
                          cpu_request_milli=250, run_as_user=1000, read_only_root=True, cap_drop=("ALL",),
                          ports=((80, "TCP"),))
    body = docker_config(cfg, SANDBOX)
    h = body["HostConfig"]
    assert body["Entrypoint"] == ["sh"] and body["Cmd"] == ["-c", "x"] and body["Env"] == ["K=V"]
    assert body["User"] == "1000" and "ExposedPorts" not in body
    assert h["NetworkMode"] == "container:s" and h["Binds"] == ["/h:/c:ro"]
    assert (h["Memory"], h["MemorySwap"], h["CpuQuota"], h["CpuPeriod"], h["CpuShares"]) == \
        (64 << 20, 64 << 20, 50_000, 100_000, 256)
    assert h["ReadonlyRootfs"] is True and h["CapDrop"] == ["ALL"]


def test_crashloop_backoff_grows_to_five_minutes_and_resets():
    from nodeagent.worker import restart_backoff

    entry, t, delays, waits = None, 1000.0, [], []
    for _ in range(8):              # a container that runs half a second and dies, every time
        finished = t + 0.5
        wait, _ = restart_backoff(entry, finished, finished)   # the sync right after it died
        waits.append(None if wait is None else wait - finished)
        now = wait if wait is not None else finished
        again, entry = restart_backoff(entry, finished, now)   # the sync when the backoff ended
        assert again is None
        delays.append(entry[0])
        t = now
    assert waits == [None, 10, 20, 40, 80, 160, 300, 300]   # the first restart is immediate
    assert delays == [10, 20, 40, 80, 160, 300, 300, 300]
    # It ran for longer than ten minutes since the last raise: the backoff starts over.
    later = entry[1] + 601
    assert restart_backoff(entry, later, later) == (None, (10, later))
