"""The node lifecycle controller's decisions, table-driven, without any server."""
from __future__ import annotations

import math

import pytest

from reconcilers.controllers.nodelifecycle import (FULL, NORMAL, NOT_READY_TAINT, PARTIAL, UNREACHABLE_TAINT,
                                                   Settings, ZoneLimiter, eviction_deadline, eviction_rate,
                                                   health_conditions, no_execute_step, node_ready, tainted,
                                                   tolerates, zone_key, zone_state)

NOW = "2026-11-28T10:00:00Z"
T0 = 1_800_000_000.0


def _cond(type_, status, reason="KubeletReady", t="2026-11-28T09:00:00Z"):
    return {"type": type_, "status": status, "reason": reason, "message": "m", "lastHeartbeatTime": t,
            "lastTransitionTime": t}


HEALTHY_CONDS = [_cond("Ready", "True"), _cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                 _cond("DiskPressure", "False"), _cond("PIDPressure", "False")]
UNKNOWN_CONDS = [dict(c, status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status.",
                      lastTransitionTime=NOW) for c in HEALTHY_CONDS]


@pytest.mark.parametrize("name, conditions, healthy, expect", [
    ("healthy stays", HEALTHY_CONDS, True, None),
    ("lease expired: every kubelet condition Unknown", HEALTHY_CONDS, False, UNKNOWN_CONDS),
    ("already Unknown: no write", UNKNOWN_CONDS, False, None),
    ("never posted: a Ready Unknown of its own",
     [], False, [{"type": "Ready", "status": "Unknown", "lastHeartbeatTime": NOW, "lastTransitionTime": NOW,
                  "reason": "NodeStatusNeverUpdated", "message": "Kubelet never posted node status."}]),
    ("agent says not ready, lease fresh: left alone", [_cond("Ready", "False", "KubeletNotReady")], True, None),
    ("agent says not ready, lease gone: Unknown",
     [_cond("Ready", "False", "KubeletNotReady")], False,
     [dict(_cond("Ready", "Unknown", "NodeStatusUnknown"), message="Kubelet stopped posting node status.",
           lastTransitionTime=NOW)]),
])
def test_health_conditions(name, conditions, healthy, expect):
    assert health_conditions(conditions, healthy=healthy, now=NOW) == expect, name


def test_health_conditions_come_back_when_the_lease_renews():
    back = health_conditions(UNKNOWN_CONDS, healthy=True, now="2026-11-28T10:05:00Z")
    assert [(c["type"], c["status"], c["reason"]) for c in back] == [
        ("Ready", "True", "KubeletReady"), ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"), ("PIDPressure", "False", "KubeletHasSufficientPID")]
    assert all(c["lastTransitionTime"] == "2026-11-28T10:05:00Z" for c in back)
    assert node_ready({"status": {"conditions": back}}) == "True"
    # A condition someone else made Unknown (not for a lost lease) is not ours to restore.
    other = [_cond("Ready", "Unknown", "SomethingElse")]
    assert health_conditions(other, healthy=True, now=NOW) is None


def test_node_ready():
    assert node_ready({}) == "Unknown"
    assert node_ready({"status": {"conditions": HEALTHY_CONDS}}) == "True"
    assert node_ready({"status": {"conditions": UNKNOWN_CONDS}}) == "Unknown"


U_NS = {"key": UNREACHABLE_TAINT, "effect": "NoSchedule"}
U_NE = {"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": NOW}
N_NS = {"key": NOT_READY_TAINT, "effect": "NoSchedule"}
N_NE = {"key": NOT_READY_TAINT, "effect": "NoExecute", "timeAdded": NOW}
OLD_U_NE = dict(U_NE, timeAdded="2026-11-28T09:59:00Z")
OTHER = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}


@pytest.mark.parametrize("name, taints, ready, no_execute, expect", [
    ("healthy, nothing", [], "True", False, []),
    ("healthy removes ours, keeps others", [OTHER, U_NS, OLD_U_NE], "True", False, [OTHER]),
    ("unknown: NoSchedule at once, NoExecute not yet", [OTHER], "Unknown", None, [OTHER, U_NS]),
    ("unknown: NoExecute granted", [], "Unknown", True, [U_NS, U_NE]),
    ("unknown: NoExecute kept with its time", [U_NS, OLD_U_NE], "Unknown", None, [U_NS, OLD_U_NE]),
    ("not ready: not-ready taints", [], "False", True, [N_NS, N_NE]),
    ("not-ready swapped for unreachable without waiting", [N_NS, dict(N_NE, timeAdded="x")], "Unknown", None,
     [U_NS, U_NE]),
    ("every zone dark: NoExecute taken back", [U_NS, OLD_U_NE], "Unknown", False, [U_NS]),
])
def test_tainted(name, taints, ready, no_execute, expect):
    assert tainted(taints, ready, no_execute=no_execute, now=NOW) == expect, name


@pytest.mark.parametrize("ready, not_ready, expect", [
    (5, 0, NORMAL), (3, 2, NORMAL),          # two dark nodes are never a disruption
    (1, 3, PARTIAL), (2, 3, PARTIAL),        # 3 of 5 = 60 % >= 55 %
    (3, 3, NORMAL),                          # 50 %
    (0, 1, FULL), (0, 4, FULL), (0, 0, NORMAL),
    (45, 55, PARTIAL), (46, 54, NORMAL),
])
def test_zone_state(ready, not_ready, expect):
    assert zone_state(ready, not_ready, threshold=0.55) == expect


S = Settings()


@pytest.mark.parametrize("name, state, size, all_full, expect", [
    ("normal zone", NORMAL, 10, False, 0.1),
    ("one zone fully down: a zone failure, evict", FULL, 10, False, 0.1),
    ("small zone partly dark: a partition, stop", PARTIAL, 10, False, 0.0),
    ("large zone partly dark: slowly", PARTIAL, 51, False, 0.01),
    ("every zone down: we are cut off, stop", FULL, 10, True, 0.0),
])
def test_eviction_rate(name, state, size, all_full, expect):
    assert eviction_rate(state, size, all_full=all_full, settings=S) == expect, name


@pytest.mark.parametrize("toleration, taint, expect", [
    ({"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute"}, U_NE, True),
    ({"key": UNREACHABLE_TAINT, "operator": "Exists"}, U_NE, True),
    ({"operator": "Exists"}, U_NE, True),
    ({"operator": "Equal"}, U_NE, False),
    ({"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoSchedule"}, U_NE, False),
    ({"key": NOT_READY_TAINT, "operator": "Exists"}, U_NE, False),
    ({"key": "dedicated", "value": "db"}, OTHER, True),
    ({"key": "dedicated", "value": "web"}, OTHER, False),
    ({"key": "dedicated", "operator": "Exists"}, OTHER, True),
])
def test_tolerates(toleration, taint, expect):
    assert tolerates(toleration, taint) is expect


def _pod(*tolerations):
    return {"spec": {"tolerations": list(tolerations)}}


ADDED = "2026-11-28T10:00:00Z"
ADDED_T = 1795860000.0   # ADDED as unix seconds
TAINT = {"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": ADDED}


@pytest.mark.parametrize("name, pod, taints, expect", [
    ("no toleration: the default 300 s", _pod(), [TAINT], ADDED_T + 300),
    ("tolerationSeconds 30", _pod({"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute",
                                   "tolerationSeconds": 30}), [TAINT], ADDED_T + 30),
    ("tolerates for ever (a DaemonSet's pod)", _pod({"key": UNREACHABLE_TAINT, "operator": "Exists",
                                                     "effect": "NoExecute"}), [TAINT], None),
    ("the smallest of several matching", _pod({"operator": "Exists", "tolerationSeconds": 100},
                                              {"key": UNREACHABLE_TAINT, "operator": "Exists",
                                               "tolerationSeconds": 10}), [TAINT], ADDED_T + 10),
    ("negative seconds: at once", _pod({"key": UNREACHABLE_TAINT, "operator": "Exists",
                                        "tolerationSeconds": -5}), [TAINT], ADDED_T),
    ("NoSchedule taints never evict", _pod(), [U_NS], None),
    ("an untolerated taint of someone else's: at once",
     _pod(), [{"key": "maintenance", "effect": "NoExecute", "timeAdded": ADDED}], ADDED_T),
    ("two taints: the earlier deadline", _pod({"key": UNREACHABLE_TAINT, "operator": "Exists"}),
     [TAINT, dict(N_NE, timeAdded=ADDED)], ADDED_T + 300),
])
def test_eviction_deadline(name, pod, taints, expect):
    assert eviction_deadline(pod, taints, default_toleration_seconds=300, now=ADDED_T + 1) == expect, name


def test_zone_key():
    assert zone_key({"metadata": {"labels": {"topology.kubernetes.io/zone": "zone-1",
                                             "topology.kubernetes.io/region": "r"}}}) == "r:zone-1"
    assert zone_key({"metadata": {"labels": {"topology.kubernetes.io/zone": "zone-1"}}}) == ":zone-1"
    assert zone_key({"metadata": {}}) == ""


def test_zone_limiter():
    clock = [0.0]
    lim = ZoneLimiter(0.1, clock=lambda: clock[0])
    assert lim.take() == 0.0                       # burst 1: the first node at once
    assert lim.take() == pytest.approx(10.0)       # then one every 10 s
    clock[0] = 5.0
    assert lim.take() == pytest.approx(5.0)
    clock[0] = 10.0
    assert lim.take() == 0.0
    lim.set_rate(0.0)
    clock[0] = 1000.0
    assert lim.take() == math.inf                  # a partition: never
    lim.set_rate(0.1)
    assert lim.take() == 0.0                       # back to normal starts with its burst


def test_settings_from_options():
    assert Settings.from_options({}) == Settings()
    s = Settings.from_options({"node-eviction-rate": "0.5", "node-monitor-grace-period": 2,
                               "node-lifecycle": {"default_toleration_seconds": 1, "lease-bucket": "b",
                                                  "large_cluster_threshold": "7"}})
    assert (s.eviction_rate, s.grace, s.default_toleration_seconds, s.lease_bucket, s.large_cluster_threshold) == \
        (0.5, 2.0, 1.0, "b", 7)


def test_without_nats_the_controller_is_left_out(caplog):
    from reconcilers.controllers.nodelifecycle import NodeLifecycle, build
    from reconcilers.controllers.registry import ControllerContext

    ctx = ControllerContext(client=None, informers=None, nats_url=None)
    assert build(ctx) == []
    assert "no NATS URL" in caplog.text
    with pytest.raises(ValueError, match="needs the NATS URL"):
        NodeLifecycle(ctx)


@pytest.mark.parametrize("name, kw, expect", [
    ("healthy: remove", dict(ready="True", all_full=False, has_ours=True), ("remove", 0.0)),
    ("every zone dark: remove", dict(ready="Unknown", all_full=True, has_ours=True), ("remove", 0.0)),
    ("already tainted: keep", dict(ready="Unknown", all_full=False, has_ours=True), ("keep", 0.0)),
    ("dark 2 s of 5: wait 3", dict(ready="Unknown", unhealthy_since=98.0, zone_since=0.0), ("wait", 3.0)),
    ("dark long, zone just changed: wait", dict(ready="False", unhealthy_since=0.0, zone_since=99.0),
     ("wait", 4.0)),
    ("dark and zone settled: ask the limiter", dict(ready="Unknown", unhealthy_since=90.0, zone_since=95.0),
     ("ask", 0.0)),
])
def test_no_execute_step(name, kw, expect):
    args = dict(all_full=False, has_ours=False, unhealthy_since=0.0, zone_since=0.0, monitor_period=5.0, now=100.0)
    assert no_execute_step(**{**args, **kw}) == expect, name
