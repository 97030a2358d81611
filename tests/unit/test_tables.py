from datetime import datetime, timedelta, timezone

import pytest

from eventplane.objects.errors import BadRequestError
from eventplane.objects.tables import PRINTERS, format_endpoints, human_duration, jsonpath_first, pod_status, table

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def ago(**delta) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def cells(resource, group, obj, **kw):
    [row] = table(resource, group, [obj], now=NOW, **kw)["rows"]
    return row["cells"]


def columns(resource, group, **kw):
    return [c["name"] for c in table(resource, group, [], now=NOW, **kw)["columnDefinitions"]]


@pytest.mark.parametrize("delta, text", [
    pytest.param(timedelta(seconds=-5), "<invalid>", id="future"),
    pytest.param(timedelta(seconds=-1), "0s", id="clock-skew"),
    pytest.param(timedelta(seconds=5), "5s", id="seconds"),
    pytest.param(timedelta(seconds=119), "119s", id="under-two-minutes"),
    pytest.param(timedelta(minutes=3, seconds=12), "3m12s", id="minutes-seconds"),
    pytest.param(timedelta(minutes=4), "4m", id="whole-minutes"),
    pytest.param(timedelta(minutes=10, seconds=5), "10m", id="ten-minutes-drops-seconds"),
    pytest.param(timedelta(minutes=45, seconds=30), "45m", id="minutes"),
    pytest.param(timedelta(hours=3, minutes=4), "3h4m", id="hours-minutes"),
    pytest.param(timedelta(hours=5), "5h", id="whole-hours"),
    pytest.param(timedelta(hours=20, minutes=59), "20h", id="hours"),
    pytest.param(timedelta(days=2, hours=3), "2d3h", id="days-hours"),
    pytest.param(timedelta(days=150, hours=7), "150d", id="days"),
    pytest.param(timedelta(days=365 * 3 + 45), "3y45d", id="years-days"),
    pytest.param(timedelta(days=365 * 9 + 3), "9y", id="years"),
])
def test_human_duration(delta, text):
    assert human_duration(delta) == text


def _pod(status=None, spec=None, **meta):
    return {"metadata": {"name": "p", "creationTimestamp": ago(minutes=5), **meta},
            "spec": spec or {"containers": [{"name": "a"}]}, "status": status or {}}


def _cs(name="a", ready=False, restarts=0, state=None, last=None, started=None):
    cs = {"name": name, "ready": ready, "restartCount": restarts, "state": state or {}}
    if last:
        cs["lastState"] = {"terminated": last}
    if started is not None:
        cs["started"] = started
    return cs


INIT2 = {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]}
SIDECAR = {"initContainers": [{"name": "s", "restartPolicy": "Always"}], "containers": [{"name": "a"}]}


@pytest.mark.parametrize("pod, expected", [
    pytest.param(_pod({"phase": "Pending"}), ("0/1", "Pending", "0"), id="pending"),
    pytest.param(_pod({"phase": "Running", "containerStatuses": [_cs(ready=True, state={"running": {}})]}),
                 ("1/1", "Running", "0"), id="running"),
    pytest.param(_pod({"phase": "Running", "containerStatuses": [
        _cs(state={"waiting": {"reason": "CrashLoopBackOff"}}, restarts=4,
            last={"exitCode": 1, "finishedAt": ago(minutes=2)})]}),
                 ("0/1", "CrashLoopBackOff", "4 (2m ago)"), id="crash-loop"),
    pytest.param(_pod({"phase": "Succeeded", "containerStatuses": [
        _cs(state={"terminated": {"reason": "Completed", "exitCode": 0}})]}), ("0/1", "Completed", "0"),
                 id="completed"),
    pytest.param(_pod({"phase": "Running", "containerStatuses": [
        _cs(state={"terminated": {"exitCode": 137}})]}), ("0/1", "ExitCode:137", "0"), id="exit-code"),
    pytest.param(_pod({"phase": "Running", "containerStatuses": [
        _cs(state={"terminated": {"exitCode": 0, "signal": 9}})]}), ("0/1", "Signal:9", "0"), id="signal"),
    pytest.param(_pod({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [
        _cs("a", state={"terminated": {"reason": "Completed"}}), _cs("b", ready=True, state={"running": {}})]},
        spec={"containers": [{"name": "a"}, {"name": "b"}]}), ("1/2", "Running", "0"),
                 id="completed-with-running-is-running"),
    pytest.param(_pod({"phase": "Running", "containerStatuses": [
        _cs("a", state={"terminated": {"reason": "Completed"}}), _cs("b", ready=True, state={"running": {}})]},
        spec={"containers": [{"name": "a"}, {"name": "b"}]}), ("1/2", "NotReady", "0"),
                 id="completed-with-running-not-ready"),
    pytest.param(_pod({"phase": "Pending", "initContainerStatuses": [
        _cs("i1", state={"running": {}}), _cs("i2", state={"waiting": {"reason": "PodInitializing"}})]}, INIT2),
                 ("0/1", "Init:0/2", "0"), id="init-0-of-2"),
    pytest.param(_pod({"phase": "Pending", "initContainerStatuses": [
        _cs("i1", state={"terminated": {"exitCode": 0}}), _cs("i2", state={"running": {}})]}, INIT2),
                 ("0/1", "Init:1/2", "0"), id="init-1-of-2"),
    pytest.param(_pod({"phase": "Pending", "initContainerStatuses": [
        _cs("i1", state={"waiting": {"reason": "ImagePullBackOff"}})]}, INIT2),
                 ("0/1", "Init:ImagePullBackOff", "0"), id="init-waiting-reason"),
    pytest.param(_pod({"phase": "Pending", "initContainerStatuses": [
        _cs("i1", restarts=2, state={"terminated": {"reason": "Error", "exitCode": 1}},
            last={"finishedAt": ago(seconds=30)})]}, INIT2), ("0/1", "Init:Error", "2 (30s ago)"),
                 id="init-error-counts-init-restarts"),
    pytest.param(_pod({"phase": "Pending", "initContainerStatuses": [
        _cs("i1", state={"terminated": {"exitCode": 3}})]}, INIT2), ("0/1", "Init:ExitCode:3", "0"),
                 id="init-exit-code"),
    pytest.param(_pod({"phase": "Running", "initContainerStatuses": [
        _cs("s", ready=True, started=True, restarts=1, state={"running": {}})],
        "containerStatuses": [_cs(ready=True, state={"running": {}})]}, SIDECAR), ("2/2", "Running", "1"),
                 id="sidecar-counts-as-container"),
    pytest.param(_pod({"phase": "Running", "containerStatuses": [_cs(ready=True, state={"running": {}})]},
                      deletionTimestamp=ago(seconds=1)), ("1/1", "Terminating", "0"), id="terminating"),
    pytest.param(_pod({"phase": "Succeeded"}, deletionTimestamp=ago(seconds=1)), ("0/1", "Succeeded", "0"),
                 id="terminal-phase-not-terminating"),
    pytest.param(_pod({"phase": "Running", "reason": "NodeLost"}, deletionTimestamp=ago(seconds=1)),
                 ("0/1", "Unknown", "0"), id="node-lost"),
    pytest.param(_pod({"phase": "Failed", "reason": "Evicted"}), ("0/1", "Evicted", "0"), id="status-reason"),
    pytest.param(_pod({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
                 ("0/1", "SchedulingGated", "0"), id="scheduling-gated"),
])
def test_pod_status(pod, expected):
    assert pod_status(pod, NOW) == expected


def test_pod_row_wide_cells_and_conditions():
    pod = _pod({"phase": "Succeeded", "podIPs": [{"ip": "10.1.0.4"}], "nominatedNodeName": "n2",
                "conditions": [{"type": "example.com/gate", "status": "True"}]},
               {"containers": [{"name": "a"}], "nodeName": "n1", "readinessGates": [
                   {"conditionType": "example.com/gate"}, {"conditionType": "other"}]})
    [row] = table("pods", "", [pod], now=NOW)["rows"]
    assert row["cells"] == ["p", "0/1", "Succeeded", "0", "5m", "10.1.0.4", "n1", "n2", "1/2"]
    assert row["conditions"] == [{"type": "Completed", "status": "True", "reason": "Succeeded",
                                  "message": "The pod has completed successfully."}]


def test_pod_row_placeholders():
    assert cells("pods", "", _pod({"phase": "Pending"}))[5:] == ["<none>", "<none>", "<none>", "<none>"]


@pytest.mark.parametrize("resource, group, expected", [
    pytest.param("pods", "", ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node",
                              "Readiness Gates"], id="pods"),
    pytest.param("deployments", "apps", ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images",
                                         "Selector"], id="deployments"),
    pytest.param("statefulsets", "apps", ["Name", "Ready", "Age", "Containers", "Images"], id="statefulsets"),
    pytest.param("daemonsets", "apps", ["Name", "Desired", "Current", "Ready", "Up-to-date", "Available",
                                        "Node Selector", "Age", "Containers", "Images", "Selector"], id="daemonsets"),
    pytest.param("jobs", "batch", ["Name", "Status", "Completions", "Duration", "Age", "Containers", "Images",
                                   "Selector"], id="jobs"),
    pytest.param("cronjobs", "batch", ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule", "Age",
                                       "Containers", "Images", "Selector"], id="cronjobs"),
    pytest.param("services", "", ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"],
                 id="services"),
    pytest.param("nodes", "", ["Name", "Status", "Roles", "Age", "Version", "Internal-IP", "External-IP",
                               "OS-Image", "Kernel-Version", "Container-Runtime"], id="nodes"),
    pytest.param("events", "", ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message",
                                "First Seen", "Count", "Name"], id="events"),
    pytest.param("priorityclasses", "scheduling.k8s.io", ["Name", "Value", "Global-Default", "Age",
                                                          "PreemptionPolicy"], id="priorityclasses"),
    pytest.param("clusterroles", "rbac.authorization.k8s.io", ["Name", "Created At"], id="default-table"),
    pytest.param("customresourcedefinitions", "apiextensions.k8s.io", ["Name", "Created At"], id="crds"),
    pytest.param("widgets", "example.com", ["Name", "Age"], id="custom-resource"),
])
def test_column_names(resource, group, expected):
    assert columns(resource, group) == expected


@pytest.mark.parametrize("resource, group, expected", [
    pytest.param("pods", "", ["Name", "Ready", "Status", "Restarts", "Age"], id="pods"),
    pytest.param("events", "", ["Last Seen", "Type", "Reason", "Object", "Message"], id="events"),
    pytest.param("rolebindings", "rbac.authorization.k8s.io", ["Name", "Role", "Age"], id="rolebindings"),
])
def test_narrow_tables_drop_wide_columns(resource, group, expected):
    assert columns(resource, group, wide=False) == expected


@pytest.mark.parametrize("key", sorted(PRINTERS, key=str))
def test_every_printer_is_well_formed(key):
    printer = PRINTERS[key]
    names = [c["name"] for c in printer.columns]
    assert printer.columns[names.index("Name")]["format"] == "name"
    assert all(set(c) == {"name", "type", "format", "description", "priority"} for c in printer.columns)
    assert all(c["priority"] in (0, 1) for c in printer.columns)
    # A near-empty object still prints one cell per column.
    [row] = table(key[1], key[0], [{"metadata": {"name": "x"}}], now=NOW)["rows"]
    assert len(row["cells"]) == len(printer.columns)


WORKLOAD_TEMPLATE = {"spec": {"containers": [{"name": "web", "image": "nginx:1"}, {"name": "log", "image": "busybox"}]}}


@pytest.mark.parametrize("resource, obj, expected", [
    pytest.param("deployments", {"spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                                          "template": WORKLOAD_TEMPLATE},
                                 "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}},
                 ["x", "2/3", 3, 2, "5m", "web,log", "nginx:1,busybox", "app=web"], id="deployment"),
    pytest.param("replicasets", {"spec": {"replicas": 2, "selector": {}, "template": WORKLOAD_TEMPLATE},
                                 "status": {"replicas": 2, "readyReplicas": 1}},
                 ["x", 2, 2, 1, "5m", "web,log", "nginx:1,busybox", "<none>"], id="replicaset-empty-selector"),
    pytest.param("statefulsets", {"spec": {"replicas": 3, "template": WORKLOAD_TEMPLATE},
                                  "status": {"readyReplicas": 3}}, ["x", "3/3", "5m", "web,log", "nginx:1,busybox"],
                 id="statefulset"),
    pytest.param("daemonsets", {"spec": {"template": {"spec": {"nodeSelector": {"os": "linux"},
                                                               "containers": [{"name": "a", "image": "i"}]}},
                                         "selector": {"matchLabels": {"a": "b"}}},
                                "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2,
                                           "numberReady": 1, "updatedNumberScheduled": 2, "numberAvailable": 1}},
                 ["x", 2, 2, 1, 2, 1, "os=linux", "5m", "a", "i", "a=b"], id="daemonset"),
])
def test_workload_rows(resource, obj, expected):
    obj = {"metadata": {"name": "x", "creationTimestamp": ago(minutes=5)}, **obj}
    assert cells(resource, "apps", obj) == expected


@pytest.mark.parametrize("spec, status, deleting, expected", [
    pytest.param({"completions": 3}, {"succeeded": 1, "startTime": ago(minutes=2)}, False,
                 ["Running", "1/3", "2m"], id="running"),
    pytest.param({"completions": 1}, {"succeeded": 1, "startTime": ago(minutes=10), "completionTime": ago(minutes=8),
                                      "conditions": [{"type": "Complete", "status": "True"}]}, False,
                 ["Complete", "1/1", "2m"], id="complete-duration-is-run-time"),
    pytest.param({"parallelism": 4}, {"conditions": [{"type": "Failed", "status": "True"}]}, False,
                 ["Failed", "0/1 of 4", ""], id="failed-work-queue"),
    pytest.param({}, {"conditions": [{"type": "Suspended", "status": "True"}]}, False, ["Suspended", "0/1", ""],
                 id="suspended"),
    pytest.param({}, {"conditions": [{"type": "Suspended", "status": "True"}]}, True, ["Terminating", "0/1", ""],
                 id="terminating-before-suspended"),
    pytest.param({}, {"conditions": [{"type": "FailureTarget", "status": "True"}]}, False,
                 ["FailureTarget", "0/1", ""], id="failure-target"),
])
def test_job_rows(spec, status, deleting, expected):
    meta = {"name": "j", "creationTimestamp": ago(minutes=20)}
    if deleting:
        meta["deletionTimestamp"] = ago(seconds=1)
    row = cells("jobs", "batch", {"metadata": meta, "spec": spec, "status": status})
    assert row[1:4] == expected


def test_cronjob_row():
    obj = {"metadata": {"name": "c", "creationTimestamp": ago(days=3)},
           "spec": {"schedule": "*/5 * * * *", "suspend": False, "jobTemplate": {"spec": {"template": {
               "spec": {"containers": [{"name": "a", "image": "busybox"}]}}}}},
           "status": {"active": [{"name": "c-1"}], "lastScheduleTime": ago(minutes=4)}}
    assert cells("cronjobs", "batch", obj) == ["c", "*/5 * * * *", "<none>", "False", 1, "4m", "3d", "a", "busybox",
                                               "<none>"]


@pytest.mark.parametrize("spec, status, wide, expected", [
    pytest.param({"type": "ClusterIP", "clusterIPs": ["10.96.0.10"], "ports": [{"port": 53, "protocol": "UDP"},
                                                                               {"port": 53, "protocol": "TCP"}],
                  "selector": {"k8s-app": "dns"}}, {}, True,
                 ["ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP", "5m", "k8s-app=dns"], id="cluster-ip"),
    pytest.param({"type": "NodePort", "clusterIPs": ["10.96.0.2"], "ports": [{"port": 80, "nodePort": 30080,
                                                                              "protocol": "TCP"}]}, {}, True,
                 ["NodePort", "10.96.0.2", "<none>", "80:30080/TCP", "5m", "<none>"], id="node-port"),
    pytest.param({"type": "LoadBalancer", "clusterIPs": ["10.96.0.3"], "ports": []}, {}, True,
                 ["LoadBalancer", "10.96.0.3", "<pending>", "<none>", "5m", "<none>"], id="lb-pending"),
    pytest.param({"type": "LoadBalancer", "clusterIPs": ["10.96.0.3"]},
                 {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}, {"hostname": "a-very-long-name.example.com"}]}},
                 False, ["LoadBalancer", "10.96.0.3", "203.0.113.10,..."], id="lb-clipped-when-narrow"),
    pytest.param({"type": "ExternalName", "externalName": "db.example.com", "clusterIP": "None"}, {}, True,
                 ["ExternalName", "None", "db.example.com", "<none>", "5m", "<none>"], id="external-name"),
])
def test_service_rows(spec, status, wide, expected):
    obj = {"metadata": {"name": "s", "creationTimestamp": ago(minutes=5)}, "spec": spec, "status": status}
    row = cells("services", "", obj, wide=wide)
    assert row[1:1 + len(expected)] == expected


@pytest.mark.parametrize("subsets, text", [
    pytest.param([], "<none>", id="none"),
    pytest.param([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}]}],
                 "10.0.0.1:80,10.0.0.2:80", id="ports"),
    pytest.param([{"addresses": [{"ip": "10.0.0.1"}]}], "10.0.0.1", id="headless-no-ports"),
    pytest.param([{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 6)], "ports": [{"port": 80}]}],
                 "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more...", id="more"),
    pytest.param([{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}], "[fd00::1]:80", id="ipv6"),
])
def test_format_endpoints(subsets, text):
    assert format_endpoints({"subsets": subsets}) == text


@pytest.mark.parametrize("obj, expected", [
    pytest.param({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge"}},
                  "spec": {"unschedulable": True}, "status": {
                      "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                      "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian", "kernelVersion": "6.1",
                                   "containerRuntimeVersion": "docker://27.0.0"},
                      "addresses": [{"type": "InternalIP", "address": "192.168.1.5"}]}},
                 ["Ready,SchedulingDisabled", "control-plane,edge", "5m", "v1.32.0", "192.168.1.5", "<none>",
                  "Debian", "6.1", "docker://27.0.0"], id="control-plane"),
    pytest.param({"metadata": {}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}},
                 ["NotReady", "<none>", "5m", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"],
                 id="not-ready"),
    pytest.param({"metadata": {}}, ["Unknown", "<none>", "5m", "", "<none>", "<none>", "<unknown>", "<unknown>",
                                    "<unknown>"], id="no-conditions"),
])
def test_node_rows(obj, expected):
    obj["metadata"].update(name="n", creationTimestamp=ago(minutes=5))
    assert cells("nodes", "", obj)[1:] == expected


CORE_EVENT = {"metadata": {"name": "p.1"}, "type": "Warning", "reason": "BackOff",
              "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{web}"},
              "source": {"component": "kubelet", "host": "n1"}, "message": " Back-off restarting \n",
              "firstTimestamp": ago(minutes=10), "lastTimestamp": ago(minutes=1), "count": 7}
V1_EVENT = {"metadata": {"name": "p.2"}, "type": "Normal", "reason": "Scheduled", "note": "assigned",
            "regarding": {"kind": "Pod", "name": "web"}, "reportingController": "default-scheduler",
            "eventTime": "2024-05-01T11:58:00.000000Z"}


@pytest.mark.parametrize("group, obj, expected", [
    pytest.param("", CORE_EVENT, ["60s", "Warning", "BackOff", "pod/web", "spec.containers{web}", "kubelet, n1",
                                  "Back-off restarting", "10m", 7, "p.1"], id="core"),
    pytest.param("events.k8s.io", V1_EVENT, ["2m", "Normal", "Scheduled", "pod/web", "", "default-scheduler",
                                             "assigned", "2m", 1, "p.2"], id="events-v1-singleton"),
    pytest.param("", {**CORE_EVENT, "series": {"count": 12, "lastObservedTime": ago(seconds=20)}},
                 ["20s", "Warning", "BackOff", "pod/web", "spec.containers{web}", "kubelet, n1", "Back-off restarting",
                  "10m", 12, "p.1"], id="series"),
])
def test_event_rows(group, obj, expected):
    assert cells("events", group, obj) == expected


@pytest.mark.parametrize("resource, group, obj, expected", [
    pytest.param("configmaps", "", {"data": {"a": "1"}, "binaryData": {"b": "AA=="}}, ["c", 2, "5m"], id="configmap"),
    pytest.param("secrets", "", {"type": "Opaque", "data": {"a": "MQ=="}}, ["c", "Opaque", 1, "5m"], id="secret"),
    pytest.param("serviceaccounts", "", {}, ["c", 0, "5m"], id="serviceaccount"),
    pytest.param("namespaces", "", {"status": {"phase": "Terminating"}}, ["c", "Terminating", "5m"], id="namespace"),
    pytest.param("leases", "coordination.k8s.io", {"spec": {"holderIdentity": "ctrl-1"}}, ["c", "ctrl-1", "5m"],
                 id="lease"),
    pytest.param("priorityclasses", "scheduling.k8s.io", {"value": 1000, "globalDefault": True,
                                                           "preemptionPolicy": "Never"},
                 ["c", 1000, True, "5m", "Never"], id="priorityclass"),
    pytest.param("poddisruptionbudgets", "policy", {"spec": {"minAvailable": "50%"}, "status": {
        "disruptionsAllowed": 1}}, ["c", "50%", "N/A", 1, "5m"], id="pdb"),
    pytest.param("clusterrolebindings", "rbac.authorization.k8s.io", {
        "roleRef": {"kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
                     {"kind": "ServiceAccount", "namespace": "ci", "name": "bot"}, {"kind": "User", "name": "bob"}]},
                 ["c", "ClusterRole/admin", "5m", "alice, bob", "devs", "ci/bot"], id="binding"),
    pytest.param("persistentvolumes", "", {"spec": {"capacity": {"storage": "1024Mi"}, "accessModes": [
        "ReadWriteMany", "ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "fast",
        "claimRef": {"namespace": "d", "name": "data"}}, "status": {"phase": "Bound"}},
                 ["c", "1Gi", "RWO,RWX", "Retain", "Bound", "d/data", "fast", "<unset>", "", "5m", "<unset>"],
                 id="pv-canonical-capacity"),
    pytest.param("persistentvolumeclaims", "", {"spec": {"volumeName": "pv1", "volumeMode": "Filesystem"},
                                                "status": {"phase": "Bound", "capacity": {"storage": "1.5Gi"},
                                                           "accessModes": ["ReadWriteOnce"]}},
                 ["c", "Bound", "pv1", "1536Mi", "RWO", "", "<unset>", "5m", "Filesystem"], id="pvc-bound"),
    pytest.param("persistentvolumeclaims", "", {"spec": {}, "status": {"phase": "Pending"}},
                 ["c", "Pending", "", "", "", "", "<unset>", "5m", "<unset>"], id="pvc-pending"),
    pytest.param("resourcequotas", "", {"status": {"hard": {"pods": "10", "limits.cpu": "2", "requests.cpu": "1000m"},
                                                   "used": {"pods": "3", "requests.cpu": "500m"}}},
                 ["c", "pods: 3/10, requests.cpu: 500m/1", "limits.cpu: 0/2", "5m"], id="quota"),
    pytest.param("controllerrevisions", "apps", {"revision": 3, "metadata": {"ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": True}]}},
                 ["c", "statefulset.apps/web", 3, "5m"], id="controllerrevision"),
])
def test_other_rows(resource, group, obj, expected):
    obj = {**obj, "metadata": {"name": "c", "creationTimestamp": ago(minutes=5), **obj.get("metadata", {})}}
    assert cells(resource, group, obj) == expected


def test_default_table_prints_created_at_in_rfc3339():
    obj = {"metadata": {"name": "admin", "creationTimestamp": "2024-04-30T12:00:00+02:00"}}
    t = table("clusterroles", "rbac.authorization.k8s.io", [obj], now=NOW)
    assert t["rows"][0]["cells"] == ["admin", "2024-04-30T10:00:00Z"]
    assert t["columnDefinitions"][1]["type"] == "date"


PRINTER_COLUMNS = [
    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Host", "type": "string", "jsonPath": ".metadata.labels.app\\.kubernetes\\.io/host", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Missing", "type": "boolean", "jsonPath": ".spec.nothing"},
]


def test_custom_resource_printer_columns():
    obj = {"metadata": {"name": "w", "creationTimestamp": ago(hours=2), "labels": {"app.kubernetes.io/host": "h1"}},
           "spec": {"replicas": 2},
           "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}}
    t = table("widgets", "example.com", [obj], now=NOW, printer_columns=PRINTER_COLUMNS)
    assert t["rows"][0]["cells"] == ["w", 2, "True", "h1", "120m", None]
    assert [c["priority"] for c in t["columnDefinitions"]] == [0, 0, 0, 1, 0, 0]


def test_custom_resource_without_printer_columns_shows_age():
    obj = {"metadata": {"name": "w", "creationTimestamp": ago(days=3)}}
    t = table("widgets", "example.com", [obj], now=NOW)
    assert t["rows"][0]["cells"] == ["w", "3d"]
    assert t["columnDefinitions"][1]["type"] == "date"


@pytest.mark.parametrize("path, value", [
    pytest.param(".a.b", 1, id="fields"),
    pytest.param("{.a.b}", 1, id="braces"),
    pytest.param(".list[1].n", "y", id="index"),
    pytest.param(".list[*].n", "x", id="wildcard-first"),
    pytest.param(".list[?(@.n=='y')].v", 2, id="filter"),
    pytest.param(".list[?(@.n!='x')].v", 2, id="filter-not-equal"),
    pytest.param(".a['b']", 1, id="quoted-key"),
    pytest.param(".a.c", None, id="missing"),
    pytest.param("..a", None, id="recursive-unsupported"),
])
def test_jsonpath_first(path, value):
    assert jsonpath_first({"a": {"b": 1}, "list": [{"n": "x", "v": 1}, {"n": "y", "v": 2}]}, path) == value


@pytest.mark.parametrize("include, expected", [
    pytest.param("None", None, id="none"),
    pytest.param("Object", {"metadata": {"name": "c", "uid": "u"}, "data": {"a": "1"}}, id="object"),
    pytest.param("Metadata", {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                              "metadata": {"name": "c", "uid": "u"}}, id="metadata"),
    pytest.param("", {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                      "metadata": {"name": "c", "uid": "u"}}, id="default-is-metadata"),
])
def test_include_object(include, expected):
    obj = {"metadata": {"name": "c", "uid": "u"}, "data": {"a": "1"}}
    t = table("configmaps", "", [obj], now=NOW, include_object=include)
    assert t["rows"][0]["object"] == expected
    assert (t["kind"], t["apiVersion"]) == ("Table", "meta.k8s.io/v1")


def test_bad_include_object_is_a_bad_request():
    with pytest.raises(BadRequestError):
        table("configmaps", "", [], now=NOW, include_object="Everything")
