import copy
from datetime import datetime, timezone

import pytest

from eventplane.objects.defaults import (apply_defaults, generation_relevant, image_tag, pod_qos_class,
                                         prepare_for_create, tracks_generation)


def defaulted(group, kind, obj):
    obj = copy.deepcopy(obj)
    apply_defaults(group, "v1", kind, obj)
    return obj


def get(obj, path):
    for part in path.split("."):
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


POD = {"metadata": {"name": "p"}, "spec": {
    "containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}],
                    "readinessProbe": {"httpGet": {"port": 80}},
                    "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}],
    "volumes": [{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "c"}}, {"name": "s", "secret": {}},
                {"name": "h", "hostPath": {"path": "/tmp"}}]}}


@pytest.mark.parametrize("path, value", [
    pytest.param("spec.restartPolicy", "Always", id="restart-policy"),
    pytest.param("spec.dnsPolicy", "ClusterFirst", id="dns-policy"),
    pytest.param("spec.schedulerName", "default-scheduler", id="scheduler"),
    pytest.param("spec.terminationGracePeriodSeconds", 30, id="grace"),
    pytest.param("spec.securityContext", {}, id="security-context"),
    pytest.param("spec.enableServiceLinks", True, id="service-links"),
    pytest.param("spec.preemptionPolicy", "PreemptLowerPriority", id="preemption"),
    pytest.param("spec.priority", 0, id="priority"),
    pytest.param("spec.containers.0.imagePullPolicy", "Always", id="pull-policy-untagged"),
    pytest.param("spec.containers.0.terminationMessagePath", "/dev/termination-log", id="termination-path"),
    pytest.param("spec.containers.0.terminationMessagePolicy", "File", id="termination-policy"),
    pytest.param("spec.containers.0.resources", {}, id="resources"),
    pytest.param("spec.containers.0.ports.0.protocol", "TCP", id="port-protocol"),
    pytest.param("spec.containers.0.readinessProbe", {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                                                      "timeoutSeconds": 1, "periodSeconds": 10,
                                                      "successThreshold": 1, "failureThreshold": 3}, id="probe"),
    pytest.param("spec.containers.0.env.0.valueFrom.fieldRef.apiVersion", "v1", id="field-ref"),
    pytest.param("spec.volumes.0", {"name": "scratch", "emptyDir": {}}, id="empty-dir"),
    pytest.param("spec.volumes.1.configMap.defaultMode", 420, id="config-map-mode"),
    pytest.param("spec.volumes.2.secret.defaultMode", 420, id="secret-mode"),
    pytest.param("spec.volumes.3.hostPath.type", "", id="host-path-type"),
])
def test_pod_defaults(path, value):
    assert get(defaulted("", "Pod", POD), path) == value


def test_set_values_are_kept():
    pod = {"spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0, "enableServiceLinks": False,
                    "containers": [{"name": "a", "image": "nginx", "imagePullPolicy": "Never",
                                    "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 3}}]}}
    out = defaulted("", "Pod", pod)
    assert out["spec"]["restartPolicy"] == "Never"
    assert out["spec"]["terminationGracePeriodSeconds"] == 0
    assert out["spec"]["enableServiceLinks"] is False
    assert out["spec"]["containers"][0]["imagePullPolicy"] == "Never"
    assert out["spec"]["containers"][0]["livenessProbe"]["periodSeconds"] == 3


def test_defaults_are_idempotent():
    once = defaulted("", "Pod", POD)
    assert defaulted("", "Pod", once) == once


@pytest.mark.parametrize("image, tag, policy", [
    pytest.param("nginx", "latest", "Always", id="no-tag"),
    pytest.param("nginx:latest", "latest", "Always", id="latest"),
    pytest.param("nginx:1.25", "1.25", "IfNotPresent", id="tag"),
    pytest.param("localhost:5000/nginx", "latest", "Always", id="registry-port-no-tag"),
    pytest.param("localhost:5000/nginx:2", "2", "IfNotPresent", id="registry-port-tag"),
    pytest.param("nginx@sha256:abc", "", "IfNotPresent", id="digest"),
])
def test_image_pull_policy(image, tag, policy):
    assert image_tag(image) == tag
    pod = defaulted("", "Pod", {"spec": {"containers": [{"name": "a", "image": image}]}})
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_pod_requests_default_to_limits():
    pod = defaulted("", "Pod", {"spec": {"containers": [{"name": "a", "image": "x", "resources": {
        "limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}]}})
    assert pod["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}


def test_host_network_pods_get_host_ports():
    pod = defaulted("", "Pod", {"spec": {"hostNetwork": True, "containers": [
        {"name": "a", "image": "x", "ports": [{"containerPort": 9100}]}]}})
    assert pod["spec"]["containers"][0]["ports"][0]["hostPort"] == 9100


@pytest.mark.parametrize("kind, path", [
    pytest.param("Deployment", "spec.template.spec.enableServiceLinks", id="deployment"),
    pytest.param("Deployment", "spec.template.spec.priority", id="deployment-priority"),
])
def test_pod_only_defaults_stay_out_of_templates(kind, path):
    out = defaulted("apps", kind, {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}})
    with pytest.raises(KeyError):
        get(out, path)


TEMPLATE = {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "a", "image": "x:1"}]}}


@pytest.mark.parametrize("group, kind, obj, expected", [
    pytest.param("apps", "Deployment", {"spec": {"template": TEMPLATE}}, {
        "spec.replicas": 1, "spec.strategy": {"type": "RollingUpdate", "rollingUpdate": {
            "maxUnavailable": "25%", "maxSurge": "25%"}},
        "spec.revisionHistoryLimit": 10, "spec.progressDeadlineSeconds": 600,
        "spec.template.spec.restartPolicy": "Always",
        "spec.template.spec.containers.0.imagePullPolicy": "IfNotPresent"}, id="deployment"),
    pytest.param("apps", "Deployment", {"spec": {"strategy": {"type": "Recreate"}}},
                 {"spec.strategy": {"type": "Recreate"}}, id="deployment-recreate-has-no-rolling-update"),
    pytest.param("apps", "ReplicaSet", {"spec": {}}, {"spec.replicas": 1}, id="replicaset"),
    pytest.param("apps", "StatefulSet", {"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"},
                                                                            "spec": {}}]}}, {
        "spec.replicas": 1, "spec.podManagementPolicy": "OrderedReady",
        "spec.updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        "spec.revisionHistoryLimit": 10,
        "spec.persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
        "spec.volumeClaimTemplates.0.spec.volumeMode": "Filesystem",
        "spec.volumeClaimTemplates.0.status.phase": "Pending"}, id="statefulset"),
    pytest.param("apps", "StatefulSet", {"spec": {"updateStrategy": {"type": "OnDelete"}}},
                 {"spec.updateStrategy": {"type": "OnDelete"}}, id="statefulset-on-delete"),
    pytest.param("apps", "DaemonSet", {"spec": {}}, {
        "spec.updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
        "spec.revisionHistoryLimit": 10}, id="daemonset"),
    pytest.param("batch", "Job", {"spec": {"template": TEMPLATE}}, {
        "spec.completions": 1, "spec.parallelism": 1, "spec.backoffLimit": 6, "spec.completionMode": "NonIndexed",
        "spec.suspend": False, "spec.podReplacementPolicy": "TerminatingOrFailed",
        "metadata.labels": {"app": "a"}}, id="job"),
    pytest.param("batch", "Job", {"spec": {"parallelism": 3}}, {"spec.parallelism": 3, "spec.backoffLimit": 6},
                 id="job-work-queue-keeps-completions-unset"),
    pytest.param("batch", "Job", {"spec": {"backoffLimitPerIndex": 1, "podFailurePolicy": {"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}}},
                 {"spec.backoffLimit": 2147483647, "spec.podReplacementPolicy": "Failed",
                  "spec.podFailurePolicy.rules.0.onPodConditions.0.status": "True"}, id="job-failure-policy"),
    pytest.param("batch", "CronJob", {"spec": {"jobTemplate": {"spec": {"template": TEMPLATE}}}}, {
        "spec.concurrencyPolicy": "Allow", "spec.suspend": False, "spec.successfulJobsHistoryLimit": 3,
        "spec.failedJobsHistoryLimit": 1, "spec.jobTemplate.spec.template.spec.dnsPolicy": "ClusterFirst"},
                 id="cronjob"),
    pytest.param("", "ReplicationController", {"spec": {"template": TEMPLATE}}, {
        "spec.replicas": 1, "spec.selector": {"app": "a"}, "metadata.labels": {"app": "a"}}, id="rc"),
    pytest.param("", "Service", {"spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]}}, {
        "spec.type": "ClusterIP", "spec.sessionAffinity": "None", "spec.ports.0.protocol": "TCP",
        "spec.ports.0.targetPort": 80, "spec.ipFamilyPolicy": "SingleStack", "spec.ipFamilies": ["IPv4"],
        "spec.internalTrafficPolicy": "Cluster"}, id="service"),
    pytest.param("", "Service", {"spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": "http"}]}}, {
        "spec.externalTrafficPolicy": "Cluster", "spec.allocateLoadBalancerNodePorts": True,
        "spec.ports.0.targetPort": "http"}, id="service-load-balancer"),
    pytest.param("", "Service", {"spec": {"sessionAffinity": "ClientIP"}},
                 {"spec.sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}}, id="service-client-ip"),
    pytest.param("", "Service", {"spec": {"clusterIP": "None"}}, {"spec.ipFamilyPolicy": "RequireDualStack"},
                 id="service-headless-selectorless"),
    pytest.param("", "Namespace", {"metadata": {"name": "team-a"}}, {
        "metadata.labels": {"kubernetes.io/metadata.name": "team-a"}, "status.phase": "Active"}, id="namespace"),
    pytest.param("", "Secret", {}, {"type": "Opaque"}, id="secret"),
    pytest.param("", "PersistentVolumeClaim", {"spec": {}}, {"spec.volumeMode": "Filesystem",
                                                            "status.phase": "Pending"}, id="pvc"),
    pytest.param("", "PersistentVolume", {"spec": {}}, {
        "spec.persistentVolumeReclaimPolicy": "Retain", "spec.volumeMode": "Filesystem", "status.phase": "Pending"},
                 id="pv"),
    pytest.param("", "Endpoints", {"subsets": [{"ports": [{"port": 80}]}]}, {"subsets.0.ports.0.protocol": "TCP"},
                 id="endpoints"),
    pytest.param("", "Node", {"status": {"capacity": {"cpu": "4"}}}, {"status.allocatable": {"cpu": "4"}},
                 id="node-allocatable"),
    pytest.param("", "LimitRange", {"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"},
                                                         "min": {"memory": "1Mi"}}]}},
                 {"spec.limits.0.default": {"cpu": "2"}, "spec.limits.0.defaultRequest": {"cpu": "2",
                                                                                          "memory": "1Mi"}},
                 id="limitrange"),
    pytest.param("scheduling.k8s.io", "PriorityClass", {"value": 10}, {"preemptionPolicy": "PreemptLowerPriority"},
                 id="priorityclass"),
    pytest.param("rbac.authorization.k8s.io", "RoleBinding", {
        "roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "u"},
                                                                {"kind": "ServiceAccount", "name": "s"}]},
                 {"roleRef.apiGroup": "rbac.authorization.k8s.io",
                  "subjects.0.apiGroup": "rbac.authorization.k8s.io", "subjects.1.apiGroup": ""}, id="rolebinding"),
    pytest.param("networking.k8s.io", "NetworkPolicy", {"spec": {"egress": [{"ports": [{"port": 53}]}]}},
                 {"spec.policyTypes": ["Ingress", "Egress"], "spec.egress.0.ports.0.protocol": "TCP"},
                 id="networkpolicy"),
])
def test_kind_defaults(group, kind, obj, expected):
    out = defaulted(group, kind, obj)
    assert {path: get(out, path) for path in expected} == expected


@pytest.mark.parametrize("group, kind, obj", [
    pytest.param("", "ConfigMap", {"data": {"a": "b"}}, id="configmap"),
    pytest.param("", "ServiceAccount", {"metadata": {"name": "s"}}, id="serviceaccount"),
    pytest.param("coordination.k8s.io", "Lease", {"spec": {}}, id="lease"),
    pytest.param("example.com", "Widget", {"spec": {"replicas": None}}, id="custom-resource"),
])
def test_kinds_without_defaults_are_untouched(group, kind, obj):
    assert defaulted(group, kind, obj) == obj


def _container(requests=None, limits=None):
    return {"name": "c", "resources": {k: v for k, v in (("requests", requests), ("limits", limits)) if v}}


@pytest.mark.parametrize("containers, qos", [
    pytest.param([_container()], "BestEffort", id="nothing"),
    pytest.param([_container(limits={"cpu": "1", "memory": "1Gi"}, requests={"cpu": "1000m",
                                                                             "memory": "1024Mi"})],
                 "Guaranteed", id="equal-by-value"),
    pytest.param([_container(requests={"cpu": "100m"})], "Burstable", id="requests-only"),
    pytest.param([_container(limits={"cpu": "1"}, requests={"cpu": "1"})], "Burstable", id="no-memory-limit"),
    pytest.param([_container(limits={"cpu": "1", "memory": "1Gi"}, requests={"cpu": "500m", "memory": "1Gi"})],
                 "Burstable", id="request-below-limit"),
    pytest.param([_container(requests={"cpu": "0"})], "BestEffort", id="zero-does-not-count"),
    pytest.param([_container(requests={"ephemeral-storage": "1Gi"})], "BestEffort", id="other-resources-ignored"),
])
def test_pod_qos_class(containers, qos):
    assert pod_qos_class({"containers": containers}) == qos


NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("group, kind, obj, expected", [
    pytest.param("", "Namespace", {"spec": {"finalizers": ["example.com/x"]}, "status": {"phase": "Terminating"}},
                 {"spec": {"finalizers": ["example.com/x", "kubernetes"]}, "status": {"phase": "Active"}},
                 id="namespace"),
    pytest.param("", "Pod", {"spec": {"containers": [_container(requests={"cpu": "1"})]},
                             "status": {"phase": "Running"}},
                 {"spec": {"containers": [_container(requests={"cpu": "1"})]},
                  "status": {"phase": "Pending", "qosClass": "Burstable"}}, id="pod-status-reset"),
    pytest.param("", "Pod", {"spec": {"schedulingGates": [{"name": "g"}], "containers": []}},
                 {"spec": {"schedulingGates": [{"name": "g"}], "containers": []},
                  "status": {"phase": "Pending", "qosClass": "BestEffort", "conditions": [
                      {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
                       "message": "Scheduling is blocked due to non-empty scheduling gates"}]}}, id="pod-gated"),
    pytest.param("", "PersistentVolume", {"spec": {}}, {"spec": {}, "status": {
        "phase": "Pending", "lastPhaseTransitionTime": "2024-05-01T12:00:00Z"}}, id="pv"),
])
def test_prepare_for_create(group, kind, obj, expected):
    prepare_for_create(group, kind, obj, now=NOW)
    assert obj == expected


def test_job_selector_is_generated_from_the_uid():
    job = {"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": {"spec": {}}}}
    prepare_for_create("batch", "Job", job)
    labels = {"job-name": "pi", "batch.kubernetes.io/job-name": "pi", "controller-uid": "u-1",
              "batch.kubernetes.io/controller-uid": "u-1"}
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}
    assert job["spec"]["template"]["metadata"]["labels"] == labels
    assert job["metadata"]["labels"] == labels


def test_manual_selector_jobs_keep_their_selector():
    job = {"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"manualSelector": True,
                                                              "selector": {"matchLabels": {"a": "b"}}}}
    prepare_for_create("batch", "Job", job)
    assert job["spec"]["selector"] == {"matchLabels": {"a": "b"}}


@pytest.mark.parametrize("group, kind, tracked", [
    pytest.param("apps", "Deployment", True, id="deployment"),
    pytest.param("batch", "CronJob", True, id="cronjob"),
    pytest.param("admissionregistration.k8s.io", "MutatingWebhookConfiguration", True, id="webhooks"),
    pytest.param("", "ConfigMap", False, id="configmap"),
    pytest.param("", "Secret", False, id="secret"),
    pytest.param("", "Pod", False, id="pod-1-32"),
    pytest.param("", "Service", False, id="service"),
    pytest.param("example.com", "Widget", True, id="custom-resource"),
])
def test_tracks_generation(group, kind, tracked):
    assert tracks_generation(group, kind) is tracked


BASE = {"metadata": {"name": "d", "labels": {"a": "1"}, "annotations": {"x": "1"}}, "spec": {"replicas": 1},
        "status": {"replicas": 1}}


def _changed(path, value):
    obj = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    target = obj
    for p in parents:
        target = target[p]
    target[last] = value
    return obj


@pytest.mark.parametrize("kind, group, new, bump", [
    pytest.param("Deployment", None, _changed("spec.replicas", 2), True, id="deployment-spec"),
    pytest.param("Deployment", None, _changed("metadata.annotations", {"x": "2"}), True,
                 id="deployment-annotations"),
    pytest.param("Deployment", None, _changed("metadata.labels", {"a": "2"}), False, id="deployment-labels"),
    pytest.param("Deployment", None, _changed("status.replicas", 3), False, id="deployment-status"),
    pytest.param("ReplicaSet", "apps", _changed("metadata.annotations", {"x": "2"}), False,
                 id="replicaset-annotations"),
    pytest.param("StatefulSet", "apps", _changed("spec.replicas", 5), True, id="statefulset-spec"),
    pytest.param("ConfigMap", "", {**BASE, "data": {"k": "v"}}, False, id="configmap-data"),
    pytest.param("Pod", "", _changed("spec.replicas", 9), False, id="pod-no-generation"),
    pytest.param("Widget", "example.com", {**BASE, "data": {"k": "v"}}, True, id="custom-top-level-field"),
    pytest.param("Widget", "example.com", _changed("status.replicas", 3), False, id="custom-status"),
    pytest.param("Widget", "example.com", _changed("metadata.labels", {"a": "2"}), False, id="custom-metadata"),
])
def test_generation_relevant(kind, group, new, bump):
    assert generation_relevant(kind, BASE, new, group=group) is bump


def test_custom_resources_without_status_subresource_count_status():
    new = _changed("status.replicas", 3)
    assert generation_relevant("Widget", BASE, new, group="example.com", status_subresource=False) is True


def test_webhook_configurations_count_webhooks():
    old = {"metadata": {"name": "w"}, "webhooks": [{"name": "a.example.com"}]}
    new = {**old, "webhooks": [{"name": "b.example.com"}]}
    assert generation_relevant("MutatingWebhookConfiguration", old, new) is True
    assert generation_relevant("MutatingWebhookConfiguration", old, copy.deepcopy(old)) is False
